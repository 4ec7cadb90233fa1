"""The network boundary, as a hostile page sees it: foreign Host headers (DNS rebinding), foreign
origins (CORS and "simple" cross-site requests), non-JSON writes, and config edits that point a
runtime at something that is not an executable."""
import http.client
import json
import os

import pytest

from conftest import rpc

EVIL = "http://evil.example"


def raw(port, method, path, headers=None, body=None):
    """One request with exactly these headers (http.client sets Host only when not given)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        data = body.encode() if isinstance(body, str) else body
        c.request(method, path, body=data, headers=headers or {})
        r = c.getresponse()
        text = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text
    finally:
        c.close()


def ports(m):
    return {"ollama": m.ollama, "lmstudio": m.lmstudio, "dashboard-api": m.api, "dashboard-web": m.web}


@pytest.mark.parametrize("surface", ["ollama", "lmstudio", "dashboard-api", "dashboard-web"])
def test_a_foreign_host_header_is_refused_on_every_port(mesh, surface):
    port = ports(mesh)[surface]
    path = {"ollama": "/api/tags", "lmstudio": "/v1/models", "dashboard-api": "/api/config", "dashboard-web": "/"}[surface]
    for host in ["evil.example", f"evil.example:{port}", f"localhost.evil.example:{port}", "192.168.1.7"]:
        status, headers, body = raw(port, "GET", path, {"Host": host})
        assert status == 403, (host, status, body[:200])
        assert b"allowed_hosts" in body, "the answer says how to allow a name"
    for host in [f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1", f"[::1]:{port}", f"app.localhost:{port}"]:
        assert raw(port, "GET", path, {"Host": host})[0] == 200, host
    # The refusal is in the surface's own shape.
    if surface == "ollama":
        assert isinstance(json.loads(raw(port, "GET", path, {"Host": "evil.example"})[2])["error"], str)
    if surface == "lmstudio":
        assert json.loads(raw(port, "GET", path, {"Host": "evil.example"})[2])["error"]["code"] == "host_not_allowed"


def test_allowed_hosts_adds_names(strict_mesh):
    assert raw(strict_mesh.ollama, "GET", "/api/tags", {"Host": "llm.test:1"})[0] == 200
    assert raw(strict_mesh.ollama, "GET", "/api/tags", {"Host": "other.test"})[0] == 403


def test_the_dashboard_api_gives_foreign_origins_no_cors_allowance(mesh):
    for method in ["OPTIONS", "GET"]:
        status, headers, _ = raw(mesh.api, method, "/api/config", {"Origin": EVIL, "Access-Control-Request-Method": "PUT"})
        assert status == 403, (method, status)
        assert "access-control-allow-origin" not in headers
    # Not even to the API surfaces' local origins: only the dashboard's own page.
    status, headers, _ = raw(mesh.api, "GET", "/api/logs/gateway", {"Origin": "http://localhost:3000"})
    assert status == 403 and "access-control-allow-origin" not in headers
    own = f"http://127.0.0.1:{mesh.web}"
    status, headers, _ = raw(mesh.api, "OPTIONS", "/api/config", {"Origin": own, "Access-Control-Request-Method": "PUT"})
    assert status == 204 and headers["access-control-allow-origin"] == own and "PUT" in headers["access-control-allow-methods"]
    status, headers, _ = raw(mesh.api, "GET", "/api/config", {"Origin": f"http://localhost:{mesh.web}"})
    assert status == 200 and headers["access-control-allow-origin"] == f"http://localhost:{mesh.web}" and headers["vary"] == "Origin"


def test_the_api_surfaces_allow_ollamas_local_origins_and_no_others(mesh):
    for port in [mesh.ollama, mesh.lmstudio]:
        status, headers, _ = raw(port, "OPTIONS", "/v1/chat/completions", {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
        assert status == 204 and headers["access-control-allow-origin"] == "http://localhost:5173"
        for origin in ["app://obsidian.md", "vscode-webview://x1", f"http://127.0.0.1:{mesh.web}"]:
            assert raw(port, "GET", "/v1/models", {"Origin": origin})[1]["access-control-allow-origin"] == origin
        status, headers, _ = raw(port, "OPTIONS", "/v1/chat/completions", {"Origin": EVIL, "Access-Control-Request-Method": "POST"})
        assert status == 403 and "access-control-allow-origin" not in headers
        assert raw(port, "GET", "/v1/models", {"Origin": EVIL})[0] == 403
    # A cross-site "simple" POST (text/plain, no preflight) never reaches a model.
    before = len(rpc(mesh, "metrics.sock", "metrics.requests", {"limit": 1000}))
    status, _, _ = raw(mesh.ollama, "POST", "/api/generate", {"Origin": EVIL, "Content-Type": "text/plain"},
                       json.dumps({"model": "smol", "prompt": "hi", "stream": False}))
    assert status == 403
    assert len(rpc(mesh, "metrics.sock", "metrics.requests", {"limit": 1000})) == before


def loaded(m, model):
    return any(r["model"] == model and r["state"] == "ready" for r in rpc(m, "runners.sock", "runners.list"))


def test_a_cross_site_or_non_json_write_changes_nothing(mesh):
    rpc(mesh, "runners.sock", "runners.load", {"model": "smol"})
    assert loaded(mesh, "smol")
    # What a hostile page can send without a preflight: a form or text/plain POST.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]:
        status, headers, _ = raw(mesh.api, "POST", "/api/models/smol/unload", {"Origin": EVIL, "Content-Type": content_type}, "{}")
        assert status == 403, content_type
        assert "access-control-allow-origin" not in headers
    # The same without an Origin (a script, curl): refused for its type, still nothing changes.
    status, _, body = raw(mesh.api, "POST", "/api/models/smol/unload", {"Content-Type": "text/plain"}, "{}")
    assert status == 415 and b"application/json" in body
    assert raw(mesh.api, "POST", "/api/models/smol/unload", {}, None)[0] == 415
    assert loaded(mesh, "smol"), "no refused request unloaded the model"
    # JSON from no origin (curl) or the dashboard's own origin works.
    status, _, _ = raw(mesh.api, "POST", "/api/models/smol/unload", {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{mesh.web}"}, "{}")
    assert status == 200


def test_a_foreign_origin_with_the_admin_token_may_write(strict_mesh):
    api = strict_mesh.api
    status, _, _ = raw(api, "POST", "/api/discover", {"Origin": EVIL, "Content-Type": "application/json"}, "{}")
    assert status == 403
    status, headers, _ = raw(api, "POST", "/api/discover", {"Origin": EVIL, "Content-Type": "application/json",
                                                            "Authorization": "Bearer admin-secret"}, "{}")
    assert status == 200


def test_a_runtime_path_that_is_not_an_executable_file_is_refused_and_nothing_is_written(mesh, tmp_path):
    config_file = os.path.join(mesh.work, "config", "app_config.json")
    status, _, body = raw(mesh.api, "GET", "/api/config", {})
    doc = json.loads(body)
    text = open(config_file, "rb").read()
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    defaults = {"llama-server": {"kind": "llama-server", "path": "llama-server"}, "whisper-server": {"kind": "whisper-server", "path": "whisper-server"}}
    for path in ["/nonexistent/llama-server", str(tmp_path), str(plain), "no-such-binary-on-path"]:
        app = json.loads(json.dumps(doc["app"]))
        app.setdefault("runtimes", dict(defaults))["evil"] = {"kind": "llama-server", "path": path}
        status, _, answer = raw(mesh.api, "PUT", "/api/config", {"Content-Type": "application/json"},
                                json.dumps({"revision": doc["revision"], "app": app}))
        assert status == 422, (path, status, answer[:300])
        error = json.loads(answer)["error"]
        assert "runtimes.evil.path" in error["message"] and "not an executable file" in error["message"], error
        assert open(config_file, "rb").read() == text, "the file is unchanged"
    # A real executable is accepted.
    app = json.loads(json.dumps(doc["app"]))
    app.setdefault("runtimes", dict(defaults))["extra"] = {"kind": "llama-server", "path": "/bin/true"}
    status, _, answer = raw(mesh.api, "PUT", "/api/config", {"Content-Type": "application/json"}, json.dumps({"revision": doc["revision"], "app": app}))
    assert status == 200, answer[:300]
    # Put the document back as it was.
    current = json.loads(raw(mesh.api, "GET", "/api/config", {})[2])
    assert raw(mesh.api, "PUT", "/api/config", {"Content-Type": "application/json"},
               json.dumps({"revision": current["revision"], "app": doc["app"]}))[0] == 200
