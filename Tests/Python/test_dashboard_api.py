"""The dashboard API on 8585: each endpoint, with the 401, 409 and 422 cases."""
import json
import os
import threading
import time
import urllib.error
import urllib.request

import httpx

from conftest import MODEL, call_json


call = call_json  # conftest


def test_models_load_and_unload(mesh):
    api = mesh.url(mesh.api)
    status, body = call("GET", api + "/api/models")
    assert status == 200 and body["revision"]
    smol = next(m for m in body["models"] if m["model"]["id"] == "smol")
    assert smol["model"]["metadata"]["quantization"] == "Q4_1" and smol["entry"]["model_path"] == MODEL
    status, runner = call("POST", api + "/api/models/smol-embed/load")
    assert status == 200 and runner["state"] == "ready" and runner["pid"] > 0
    assert any(m["loaded"] for m in call("GET", api + "/api/models")[1]["models"] if m["model"]["id"] == "smol-embed")
    assert call("POST", api + "/api/models/smol-embed/unload")[0] == 200
    deadline = time.time() + 10
    while time.time() < deadline and any(m["loaded"] for m in call("GET", api + "/api/models")[1]["models"] if m["model"]["id"] == "smol-embed"):
        time.sleep(0.1)
    assert not any(m["loaded"] for m in call("GET", api + "/api/models")[1]["models"] if m["model"]["id"] == "smol-embed")
    assert call("POST", api + "/api/models/nope/load")[0] == 404


def test_editing_a_model_with_revisions(mesh):
    api = mesh.url(mesh.api)
    revision = call("GET", api + "/api/models")[1]["revision"]
    status, created = call("PUT", api + "/api/models/scratch", {"revision": revision, "entry": {"model_path": MODEL, "parameters": {"ctx_size": 256}}})
    assert status == 200 and created["revision"] != revision
    status, edited = call("PUT", api + "/api/models/scratch", {"revision": created["revision"], "parameters": {"ctx_size": 384}, "aliases": ["scratchy"]})
    assert status == 200
    config_file = os.path.join(mesh.work, "config", "models_config.json")
    saved = json.load(open(config_file))["models"]["scratch"]
    assert saved == {"model_path": MODEL, "parameters": {"ctx_size": 384}, "aliases": ["scratchy"]}

    # A stale revision: 409 naming the current one; nothing written.
    status, conflict = call("PUT", api + "/api/models/scratch", {"revision": created["revision"], "ttl_seconds": 5})
    assert status == 409 and conflict["error"]["current_revision"] == edited["revision"]
    # A bad value: 422 with the validator's message; the file is unchanged.
    before = open(config_file).read()
    status, invalid = call("PUT", api + "/api/models/scratch", {"revision": edited["revision"], "parameters": {"ctx_size": "big"}})
    assert status == 422
    assert invalid["error"]["details"] == ['models_config.json: models.scratch.parameters.ctx_size: expected an integer, got "big"']
    assert open(config_file).read() == before
    assert call("PUT", api + "/api/models/scratch", {"parameters": {}})[0] == 400, "the revision is required"

    assert call("DELETE", api + "/api/models/scratch")[0] == 400
    assert call("DELETE", api + f"/api/models/scratch?revision={created['revision']}")[0] == 409
    status, deleted = call("DELETE", api + f"/api/models/scratch?revision={edited['revision']}")
    assert status == 200 and "scratch" not in json.load(open(config_file))["models"]


def test_config_discovery_and_backups(mesh):
    api = mesh.url(mesh.api)
    status, config = call("GET", api + "/api/config")
    assert status == 200 and config["app"]["proxies"]["ollama"]["port"] == mesh.ollama
    assert [f["name"] for f in config["files"]] == ["app_config.json", "models_config.json"]
    bad = json.loads(json.dumps(config["app"]))
    bad["proxies"]["ollama"]["port"] = "eleven"
    status, invalid = call("PUT", api + "/api/config", {"revision": config["revision"], "app": bad})
    assert status == 422 and "proxies.ollama.port" in invalid["error"]["details"][0]
    assert call("PUT", api + "/api/config", {"revision": "0000000000000000", "app": config["app"]})[0] == 409
    assert call("PUT", api + "/api/config", {"revision": config["revision"], "app": config["app"]})[0] == 200

    status, report = call("POST", api + "/api/discover")
    assert status == 200 and "added" in report

    status, backups = call("GET", api + "/api/config/backups")
    assert status == 200 and backups and all(b["name"].endswith(".json") for b in backups)
    models_backup = next(b for b in backups if b["file"] == "models_config.json")
    status, restored = call("POST", api + f"/api/config/backups/{models_backup['name']}/restore")
    assert status == 200 and restored["revision"]
    assert call("POST", api + "/api/config/backups/nope.json/restore")[0] == 404


def test_metrics_requests_and_logs(mesh):
    api = mesh.url(mesh.api)
    call("POST", mesh.url(mesh.ollama) + "/api/generate", {"model": "smol", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    time.sleep(0.3)
    status, summary = call("GET", api + "/api/metrics/summary")
    assert status == 200 and summary["overall"]["requests"] > 0
    time.sleep(2.2)  # one 2 s sample
    status, series = call("GET", api + "/api/metrics/series?name=requests_per_second&window=1h")
    assert status == 200 and series["stepSeconds"] == 2 and series["points"]
    assert call("GET", api + "/api/metrics/series?name=nope")[0] == 400
    status, recent = call("GET", api + "/api/requests?limit=5")
    assert status == 200 and 0 < len(recent) <= 5 and recent[0]["record"]["route"]
    status, logs = call("GET", api + "/api/logs/gateway?tail=5")
    assert status == 200 and len(logs["lines"]) <= 5 and logs["lines"]
    status, runner_log = call("GET", api + "/api/logs/smol?tail=20")
    assert status == 200 and isinstance(runner_log, list)
    assert call("GET", api + "/api/logs/nothing-here")[0] == 404


def listen_events(api, handle):
    """Starts a thread reading `/api/events`; `handle(event, data)` gets each event and returns True to stop."""
    def run():
        with httpx.Client(timeout=20) as client:
            with client.stream("GET", api + "/api/events") as r:
                event = None
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:") and event and handle(event, json.loads(line[5:])):
                        return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_events_stream_state_changes(mesh):
    api = mesh.url(mesh.api)
    seen = []

    def handle(event, data):
        seen.append((event, data))
        return event == "runner" and data["state"] == "ready"

    t = listen_events(api, handle)
    time.sleep(0.5)
    call("POST", api + "/api/models/smol-embed/unload")
    time.sleep(1)
    call("POST", api + "/api/models/smol-embed/load")
    t.join(timeout=30)
    events = [e for e, _ in seen]
    assert events[0] == "hello"
    assert "runner" in events, events
    states = [d["state"] for e, d in seen if e == "runner" and d["model"] == "smol-embed"]
    assert "loading" in states and states[-1] == "ready", states
    assert any(d.get("detail") for e, d in seen if e == "runner" and d["state"] == "loading"), "loading carries progress lines"


def test_events_carry_live_log_lines(mesh):
    api = mesh.url(mesh.api)
    lines = []

    def handle(event, data):
        if event == "log":
            lines.append(data)
            return True
        return False

    t = listen_events(api, handle)
    time.sleep(1.5)
    call("POST", api + "/api/models/smol/unload")  # runner-manager logs the stop
    call("POST", api + "/api/models/smol/load")
    t.join(timeout=20)
    assert lines and lines[0]["source"] and lines[0]["line"]


def test_each_log_line_is_sent_once(mesh):
    """The gateway tails the log files once, however long it has run (a tail per metrics tick once
    repeated every line as many times as ticks had passed)."""
    api = mesh.url(mesh.api)
    time.sleep(4.5)  # more than two metrics ticks since start
    lines = []
    stop = threading.Event()

    def handle(event, data):
        if event == "log":
            lines.append(data)
        return stop.is_set()

    listen_events(api, handle)
    time.sleep(1)
    call("POST", api + "/api/models/smol/unload")
    call("POST", api + "/api/models/smol/load")
    time.sleep(3)
    stop.set()
    # Timestamped lines are unique in their file; a runner's untimestamped ones (the chat template it
    # prints at verbosity 4, with one "<|im_start|>user" per turn) repeat legitimately.
    keys = [(d["source"], d["line"]) for d in lines if d["line"][:1].isdigit()]
    assert keys, "some log lines arrived"
    assert len(keys) == len(set(keys)), [k for k in keys if keys.count(k) > 1][:3]


def test_writes_need_the_admin_token_when_one_is_set(strict_mesh):
    api = strict_mesh.url(strict_mesh.api)
    status, body = call("POST", api + "/api/discover")
    assert status == 401 and "admin token" in body["error"]["message"]
    assert call("POST", api + "/api/discover", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert call("POST", api + "/api/discover", headers={"Authorization": "Bearer admin-secret"})[0] == 200
    assert call("POST", api + "/api/discover", headers={"x-admin-token": "admin-secret"})[0] == 200
    assert call("GET", api + "/api/models")[0] == 200, "reads stay open"


def test_the_config_api_never_shows_the_secrets_and_a_write_keeps_them(strict_mesh):
    """The admin token and the API keys are readable by nobody through the API (reads stay open, so they would
    otherwise give away the token that guards writes); the form sends the placeholder back and the file keeps them."""
    api = strict_mesh.url(strict_mesh.api)
    admin = {"Authorization": "Bearer admin-secret"}
    for path in ("/api/config", "/api/config/documents"):
        status, body = call("GET", api + path)
        text = json.dumps(body)
        assert status == 200 and "admin-secret" not in text and "sk-test-key" not in text, path
    status, config = call("GET", api + "/api/config")
    assert config["app"]["dashboard"]["admin_token"] == "<redacted>" and config["app"]["proxies"]["lmstudio"]["api_keys"] == ["<redacted>"]
    assert config["effective"]["dashboard"]["admin_token"] == "<redacted>" and config["effective"]["limits"]["max_loaded_models"] == 1
    edited = json.loads(json.dumps(config["app"]))
    edited["limits"]["queue_size"] = 33
    status, _ = call("PUT", api + "/api/config", {"revision": config["revision"], "app": edited}, headers=admin)
    assert status == 200
    on_disk = json.load(open(os.path.join(strict_mesh.config, "app_config.json")))
    assert on_disk["limits"]["queue_size"] == 33
    assert on_disk["dashboard"]["admin_token"] == "admin-secret" and on_disk["proxies"]["lmstudio"]["api_keys"] == ["sk-test-key"]
    # The backup taken before that write holds the secrets on disk, not in the API's answer.
    status, backups = call("GET", api + "/api/config/backups")
    newest = next(b for b in backups if b["file"] == "app_config.json")
    status, backup = call("GET", api + f"/api/config/backups/{newest['name']}")
    assert status == 200 and backup["document"]["dashboard"]["admin_token"] == "<redacted>" and "admin-secret" not in json.dumps(backup)
    assert call("GET", api + "/api/config/backups/..%2Fapp_config.json")[0] == 404
    edited["limits"].pop("queue_size")
    assert call("PUT", api + "/api/config", {"revision": call("GET", api + "/api/config")[1]["revision"], "app": edited}, headers=admin)[0] == 200
