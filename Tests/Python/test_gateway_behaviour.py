"""LM Studio shapes, auth, disconnects, mid-stream failures, model swapping, listings that tell the truth."""
import concurrent.futures
import json
import os
import signal
import time
import urllib.error
import urllib.request

import httpx
import ollama
import openai
import pytest

from conftest import rpc


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def post(url, body, headers=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def test_health_names_every_service_with_its_own_report(mesh):
    """Each service's health, under its own name, with its own pid, on every public port. The release
    build of Swift 6.3 once listed a single service here with another one's report (ServiceHealth.probe)."""
    pids = {}
    for port in (mesh.ollama, mesh.lmstudio, mesh.api):
        for _ in range(3):
            status, body, _ = get(mesh.url(port) + "/health")
            assert status == 200 and body["status"] == "ok" and body["down"] == [] and body["errors"] == {}
            services = body["services"]
            assert sorted(services) == ["gateway", "metrics-service", "model-registry", "runner-manager"]
            for name, info in services.items():
                assert info["service"] == name and info["status"] == "ok"
                pids.setdefault(name, set()).add(info["pid"])
    assert all(len(p) == 1 for p in pids.values()), pids
    assert len({next(iter(p)) for p in pids.values()}) == 4, "four distinct processes"


def test_lmstudio_v0_shapes_field_by_field(mesh):
    base = mesh.url(mesh.lmstudio)
    status, body, _ = get(base + "/api/v0/models")
    assert status == 200 and body["object"] == "list"
    smol = next(m for m in body["data"] if m["id"] == "smol")
    assert smol["object"] == "model" and smol["type"] == "llm" and smol["arch"] == "llama"
    assert smol["compatibility_type"] == "gguf" and smol["quantization"] == "Q4_1" and smol["max_context_length"] == 8192
    assert smol["state"] in ("loaded", "not-loaded") and isinstance(smol["publisher"], str)
    embed = next(m for m in body["data"] if m["id"] == "smol-embed")
    assert embed["type"] == "embeddings"

    status, reply, headers = post(base + "/api/v0/chat/completions",
                                  {"model": "smol", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 6, "ttl": 120})
    assert status == 200 and reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["role"] == "assistant"
    stats = reply["stats"]
    assert stats["tokens_per_second"] > 0 and stats["time_to_first_token"] > 0 and stats["generation_time"] > 0
    assert stats["stop_reason"] in ("eosFound", "maxPredictedTokensReached", "stopStringFound")
    assert reply["model_info"] == {"arch": "llama", "quant": "Q4_1", "format": "gguf", "context_length": 2048}
    assert reply["runtime"]["supported_formats"] == ["gguf"]
    assert float(headers["x-llama-runner-overhead-ms"]) >= 0

    status, body, _ = get(base + "/api/v0/models/smol")
    assert status == 200 and body["state"] == "loaded" and body["loaded_context_length"] == 2048

    status, comp, _ = post(base + "/api/v0/completions", {"model": "smol", "prompt": "The capital of France is", "max_tokens": 5})
    assert status == 200 and comp["object"] == "text_completion" and "stats" in comp
    status, emb, _ = post(base + "/api/v0/embeddings", {"model": "smol-embed", "input": "hello"})
    assert status == 200 and len(emb["data"][0]["embedding"]) == 576

    status, err, _ = get(base + "/api/v0/models/nope")
    assert status == 404 and err["error"]["code"] == "model_not_found"
    status, models, _ = get(base + "/v1/models")
    assert all(m["owned_by"] == "organization_owner" for m in models["data"])


def test_auth_is_required_only_where_keys_are_set(strict_mesh):
    lm = strict_mesh.url(strict_mesh.lmstudio)
    status, body, _ = get(lm + "/v1/models")
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, body, _ = get(lm + "/v1/models", {"Authorization": "Bearer wrong"})
    assert status == 401
    assert get(lm + "/v1/models", {"Authorization": "Bearer sk-test-key"})[0] == 200
    assert get(lm + "/v1/models", {"x-api-key": "sk-test-key"})[0] == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=lm + "/v1", api_key="wrong", max_retries=0).models.list()
    assert [m.id for m in openai.OpenAI(base_url=lm + "/v1", api_key="sk-test-key", max_retries=0).models.list()] == ["smol-a", "smol-b"]
    assert get(lm + "/health")[0] == 200, "health stays open"
    # The Ollama surface has no keys configured.
    assert get(strict_mesh.url(strict_mesh.ollama) + "/api/tags")[0] == 200


def runner(m, model):
    return next((r for r in rpc(m, "runners.sock", "runners.list") if r["model"] == model), None)


def test_a_client_that_disconnects_mid_stream_stops_generation_and_releases_the_lease(mesh):
    url = mesh.url(mesh.ollama) + "/v1/chat/completions"
    body = {"model": "smol", "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
            "max_tokens": 3000, "temperature": 1.0, "stream": True}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", url, json=body) as r:
            for _ in r.iter_lines():
                break  # one event, then hang up
    info = runner(mesh, "smol")
    deadline = time.time() + 1.0
    while time.time() < deadline:
        slots = httpx.get(info["endpoint"] + "/slots").json()
        if not any(s.get("is_processing") for s in slots):
            break
        time.sleep(0.02)
    assert not any(s.get("is_processing") for s in httpx.get(info["endpoint"] + "/slots").json()), "the runner's slot is idle within 1 s"
    deadline = time.time() + 2
    while runner(mesh, "smol")["activeLeases"] and time.time() < deadline:
        time.sleep(0.02)
    assert runner(mesh, "smol")["activeLeases"] == 0, "the lease was released"


def test_a_runner_that_dies_mid_stream_ends_the_stream_with_an_error(mesh):
    body = {"model": "smol", "messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 3000, "stream": True}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", mesh.url(mesh.ollama) + "/v1/chat/completions", json=body) as r:
            lines = r.iter_lines()
            next(lines)
            os.kill(runner(mesh, "smol")["pid"], signal.SIGKILL)
            rest = [line for line in lines if line.startswith("data:")]
    assert json.loads(rest[-1][5:])["error"]["message"]
    # The Ollama surface: a final {"error": ...} line. (The next request reloads the model.)
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", mesh.url(mesh.ollama) + "/api/chat", json={"model": "smol", "messages": [{"role": "user", "content": "Write a long story."}],
                                                                           "options": {"num_predict": 3000}}) as r:
            lines = r.iter_lines()
            next(lines)
            os.kill(runner(mesh, "smol")["pid"], signal.SIGKILL)
            rest = [json.loads(line) for line in lines if line.strip()]
    assert "error" in rest[-1] and isinstance(rest[-1]["error"], str)
    # The next request reloads the model and succeeds.
    r = ollama.Client(host=mesh.url(mesh.ollama)).chat(model="smol", messages=[{"role": "user", "content": "Say hi"}], options={"num_predict": 4})
    assert r.done


def test_two_models_alternating_with_one_slot_and_eight_clients_all_succeed(strict_mesh):
    client = openai.OpenAI(base_url=strict_mesh.url(strict_mesh.ollama) + "/v1", api_key="unused", max_retries=0)

    def ask(i):
        model = "smol-a" if i % 2 == 0 else "smol-b"
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"Say {i}"}], max_tokens=4, temperature=0)
        return r.model, r.choices[0].message.content

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(32)))
    assert len(results) == 32
    assert {m for m, _ in results} == {"smol-a", "smol-b"}
    assert all(text is not None for _, text in results)


def test_a_body_over_the_limit_is_413_in_the_callers_shape(strict_mesh):
    big = {"model": "smol-a", "messages": [{"role": "user", "content": "x" * 100_000}]}
    status, body, _ = post(strict_mesh.url(strict_mesh.ollama) + "/api/chat", big)
    assert status == 413 and isinstance(body["error"], str) and "65536" in body["error"]
    status, body, _ = post(strict_mesh.url(strict_mesh.ollama) + "/v1/chat/completions", big)
    assert status == 413 and body["error"]["type"] == "invalid_request_error"


def test_prometheus_output_passes_promtool_and_counts_requests(mesh):
    import shutil
    import subprocess
    for _ in range(3):
        post(mesh.url(mesh.ollama) + "/api/generate", {"model": "smol", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    post(mesh.url(mesh.ollama) + "/v1/chat/completions", {"model": "no-such-model", "messages": []})
    sampled = ['llama_runner_service_resident_memory_bytes{service="gateway"}', 'llama_runner_service_cpu_percent{service="runner-manager"}',
               'llama_runner_runner_cpu_percent{model="smol"}', 'llama_runner_runner_active_requests{model="smol"} 0']
    deadline = time.time() + 10  # samples come every 2 s, CPU% needs two of them
    while True:
        with urllib.request.urlopen(mesh.url(mesh.api) + "/metrics", timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = r.read().decode()
        if all(s in text for s in sampled) or time.time() > deadline:
            break
        time.sleep(0.5)
    assert 'llama_runner_requests_total{api="ollama",model="smol",route="/api/generate",status="200"}' in text
    assert "llama_runner_time_to_first_byte_seconds_bucket" in text and 'le="+Inf"' in text
    assert "/v1/models/" not in text, "labels carry route templates, never raw paths"
    # Nothing asks a runner's /slots: such a request meeting the runner's SIGTERM held its exit 1-10 s.
    assert "busy_slots" not in text
    for s in sampled:
        assert s in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test.sh installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    summary = rpc(mesh, "metrics.sock", "metrics.summary")
    assert summary["overall"]["requests"] >= 3 and summary["models"]["smol"]["timeToFirstTokenP50Ms"] > 0


def test_a_stopped_metrics_service_never_fails_or_slows_requests(mesh):
    status = get(mesh.url(mesh.api) + "/api/status")[1]
    pid = status["health"]["services"]["metrics-service"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            start = time.time()
            code, body, _ = post(mesh.url(mesh.ollama) + "/api/generate", {"model": "smol", "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
            assert code == 200 and body["done"]
            assert time.time() - start < 5, "a request must not wait for metrics"
    finally:
        os.kill(pid, signal.SIGCONT)


def test_ollama_ps_reports_the_context_the_runner_actually_runs_with(mesh):
    c = ollama.Client(host=mesh.url(mesh.ollama))
    c.generate(model="smol", prompt="Hi", options={"num_ctx": 1024, "num_predict": 2})
    ps = {m.model: m for m in c.ps().models}
    assert ps["smol:latest"].context_length == 1024, "num_ctx 1024 started a runner with --ctx-size 1024"
    c.generate(model="smol", prompt="Hi", options={"num_predict": 2})
    assert {m.model: m for m in c.ps().models}["smol:latest"].context_length == 2048, "back to the configured ctx_size"


# A 1x1 PNG.
PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def test_an_image_for_a_model_without_a_projector_is_a_400_naming_what_is_missing(mesh):
    before = [r["model"] for r in rpc(mesh, "runners.sock", "runners.list")]
    status, body, _ = post(mesh.url(mesh.ollama) + "/api/chat", {"model": "smol", "stream": False,
                                                                 "messages": [{"role": "user", "content": "What is this?", "images": [PIXEL]}]})
    assert status == 400 and isinstance(body["error"], str) and "mmproj" in body["error"] and "messages[0]" in body["error"], body
    status, body, _ = post(mesh.url(mesh.ollama) + "/api/generate", {"model": "smol", "prompt": "What is this?", "images": [PIXEL], "stream": False})
    assert status == 400 and "mmproj" in body["error"]
    client = openai.OpenAI(base_url=mesh.url(mesh.lmstudio) + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smol", messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PIXEL}}]}])
    assert e.value.body["code"] == "model_not_multimodal" and "mmproj" in e.value.body["message"]
    assert [r["model"] for r in rpc(mesh, "runners.sock", "runners.list")] == before, "nothing was loaded for it"
