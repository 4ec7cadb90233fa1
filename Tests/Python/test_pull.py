"""Pulls from the Hugging Face Hub, end to end: a local stand-in for the hub's HTTP API (fakehub.py, the public
hub being out of reach here) serves the demo GGUF, and the real mesh downloads it through every surface — the
official `ollama` client's `pull`, `launcher pull`, the dashboard API, LM Studio's REST v1 — resumes after a
dropped connection and after `kill -9`, refuses a wrong hash, too little space and the hub's errors, cancels, and
downloads a file two pulls want only once."""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import ollama
import pytest

from conftest import MODEL, bin_dir, rpc, start_mesh, stop_mesh
from fakehub import FakeHub

REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_K_M.gguf"
SIZE = os.path.getsize(MODEL)
TOKEN = "hf_" + "a" * 34


def hub_repos():
    return {
        REPO: {FILE: MODEL, "SmolLM2-135M-Instruct-Q8_0.gguf": MODEL, "README.md": b"# test\n"},
        "gated/Model-GGUF": {"model-Q4_K_M.gguf": MODEL},
        "vision/Model-GGUF": {"model-Q4_K_M.gguf": MODEL, "mmproj-model-f16.gguf": MODEL},
    }


@pytest.fixture(scope="module")
def hub():
    with FakeHub(hub_repos(), gated={"gated/Model-GGUF": "manual"}, approved_tokens={TOKEN}) as h:
        yield h


@pytest.fixture
def mesh(hub, tmp_path):
    """A fresh mesh per test (its own models folder), pulling from the fake hub with a token."""
    models = tmp_path / "models"
    models.mkdir()
    hub.clear_faults()
    hub.clear_log()
    m = start_mesh({"paths": {"models_dirs": [str(models)]}, "limits": {"max_loaded_models": 2}}, {"models": {}},
                   env={"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN})
    m.models = models
    yield m
    stop_mesh(m)


def ollama_client(m):
    return ollama.Client(host=m.url(m.ollama))


def api(m, method, path, body=None):
    req = urllib.request.Request(m.url(m.api) + path, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_pull(m, job, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = rpc(m, "registry.sock", "registry.pullStatus", {"job": job})
        if s["phase"] in ("done", "failed", "cancelled"):
            return s
        time.sleep(0.05)
    raise AssertionError(f"pull {job} did not end")


def leftovers(m):
    return sorted(str(p.relative_to(m.models)) for p in m.models.rglob("*") if p.is_file())


# --- the official ollama client ------------------------------------------------------------------------

def test_ollama_pull_streams_progress_and_the_model_then_chats(mesh, hub):
    name = f"hf.co/{REPO}:Q4_K_M"
    statuses = list(ollama_client(mesh).pull(name, stream=True))
    steps = [s.status for s in statuses]
    assert steps[0] == "pulling manifest" and steps[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    sha = hub.sha256(REPO, FILE)
    layer = [s for s in statuses if s.status == f"pulling {sha[:12]}"]
    assert layer and all(s.digest == "sha256:" + sha and s.total == SIZE for s in layer)
    assert layer[-1].completed == SIZE and [s.completed for s in layer] == sorted(s.completed for s in layer)
    # Registered and usable at once, under the name pulled (and without the tag the tag chose).
    assert name in [m.model for m in ollama_client(mesh).list().models]
    reply = ollama_client(mesh).chat(model=name, messages=[{"role": "user", "content": "Say hi"}], options={"num_predict": 4})
    assert reply.message.content
    assert leftovers(mesh) == [f"{REPO}/{FILE}"], "only the model file, no partial left"
    entry = json.load(open(os.path.join(mesh.config, "models_config.json")))["models"][name]
    assert entry["source"]["type"] == "hub" and entry["source"]["repo"] == REPO and len(entry["source"]["commit"]) == 40
    # The token went to the hub, never to the CDN the hub redirected to.
    assert any(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in hub.requests if r["server"] == "hub")
    assert all("authorization" not in r["headers"] for r in hub.requests if r["server"] == "cdn")


def test_ollama_pull_without_streaming_and_names_without_a_tag(mesh, hub):
    r = ollama_client(mesh).pull(f"huggingface.co/{REPO}", stream=False)
    assert r.status == "success"
    snap = {m["id"]: m for m in rpc(mesh, "registry.sock", "registry.snapshot")["models"]}
    assert snap[f"hf.co/{REPO}"]["path"].endswith(FILE), "no tag: Q4_K_M"
    assert snap[f"hf.co/{REPO}"]["source"] == "hub"
    # An explicit file, and the plain user/repo:tag spelling.
    assert ollama_client(mesh).pull(f"{REPO}:q8_0", stream=False).status == "success"
    assert rpc(mesh, "registry.sock", "registry.snapshot")["models"][1]["path"].endswith("Q8_0.gguf")


def test_a_projector_in_the_repository_is_fetched_and_attached(mesh, hub):
    assert ollama_client(mesh).pull("hf.co/vision/Model-GGUF", stream=False).status == "success"
    m = next(x for x in rpc(mesh, "registry.sock", "registry.snapshot")["models"] if x["id"] == "hf.co/vision/Model-GGUF")
    assert m["mmproj"].endswith("mmproj-model-f16.gguf") and os.path.exists(m["mmproj"])


# --- the other surfaces ----------------------------------------------------------------------------------

def test_launcher_pull_prints_plain_progress_lines(mesh, hub):
    hub.throttle(40_000_000)
    out = subprocess.run([os.path.join(bin_dir(), "launcher"), "pull", f"{REPO}:Q4_K_M", "--state-dir", mesh.state,
                          "--config-dir", mesh.config], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("resolving") and any(l.startswith("50% ") for l in lines) and any(l.startswith("100% ") for l in lines)
    assert lines[-1].startswith("pulled hf.co/" + REPO + ":Q4_K_M") and "\r" not in out.stdout
    bad = subprocess.run([os.path.join(bin_dir(), "launcher"), "pull", "llama3.2", "--state-dir", mesh.state, "--config-dir", mesh.config],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 64 and "not a Hugging Face model name" in bad.stderr


def test_dashboard_pull_reports_progress_on_the_event_stream(mesh, hub):
    hub.throttle(40_000_000)
    events = []
    req = urllib.request.Request(mesh.url(mesh.api) + "/api/events")

    def listen():
        with urllib.request.urlopen(req, timeout=60) as r:
            name = None
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "pull":
                    events.append(json.loads(line[6:]))
                    if events[-1]["phase"] in ("done", "failed"):
                        return
    t = threading.Thread(target=listen, daemon=True)
    t.start()
    time.sleep(0.3)
    status, started = api(mesh, "POST", "/api/models/pull", {"name": f"{REPO}:Q4_K_M"})
    assert status == 202 and started["phase"] == "resolving"
    t.join(60)
    phases = [e["phase"] for e in events]
    assert phases[-1] == "done" and "downloading" in phases
    progress = [e["files"][0]["completed"] for e in events if e["phase"] == "downloading" and e["files"]]
    assert len(progress) >= 3 and progress == sorted(progress)
    status, listed = api(mesh, "GET", "/api/models/pulls")
    assert status == 200 and listed[0]["job"] == started["job"] and listed[0]["phase"] == "done"
    status, models = api(mesh, "GET", "/api/models")
    assert any(m["model"]["id"] == f"hf.co/{REPO}:Q4_K_M" and m["model"]["source"] == "hub" for m in models["models"])
    status, error = api(mesh, "POST", "/api/models/pull", {"name": "not a name"})
    assert status == 400 and "not a Hugging Face model name" in error["error"]["message"]


def test_lmstudio_rest_v1_download_and_its_status(mesh, hub):
    base = mesh.url(mesh.lmstudio) + "/api/v1/models/download"
    req = urllib.request.Request(base, data=json.dumps({"model": f"https://huggingface.co/{REPO}", "quantization": "Q8_0"}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        job = json.loads(r.read())
    assert job["status"] in ("downloading", "completed") and job["total_size_bytes"] == SIZE and job["job_id"].startswith("pull-")
    assert job["started_at"].endswith("Z")
    deadline = time.time() + 60
    while True:
        with urllib.request.urlopen(f"{base}/status/{job['job_id']}", timeout=10) as r:
            st = json.loads(r.read())
        if st["status"] != "downloading" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert st["status"] == "completed" and st["downloaded_bytes"] == SIZE and st["completed_at"].endswith("Z")
    # Again: already there.
    with urllib.request.urlopen(urllib.request.Request(base, data=json.dumps({"model": REPO, "quantization": "Q8_0"}).encode(),
                                                       headers={"Content-Type": "application/json"}, method="POST"), timeout=60) as r:
        again = json.loads(r.read())
    if again["status"] == "downloading":
        again = wait_pull(mesh, again["job_id"]) and json.loads(urllib.request.urlopen(f"{base}/status/{again['job_id']}").read())
    assert again["status"] == "already_downloaded"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{base}/status/pull-0-nope", timeout=10)
    assert e.value.code == 404 and json.loads(e.value.read())["error"]["type"] == "job_not_found"


# --- safety on disk ------------------------------------------------------------------------------------

def test_a_connection_dropped_mid_file_resumes_with_a_range_request(mesh, hub):
    hub.drop_after(hub.sha256(REPO, FILE), 30_000_000, times=2)
    r = ollama_client(mesh).pull(f"{REPO}:Q4_K_M", stream=False)
    assert r.status == "success"
    ranges = [q["range"] for q in hub.requests if q["server"] == "cdn" and q["method"] == "GET"]
    assert len(ranges) == 3 and ranges[0] is None and all(x and x.startswith("bytes=") for x in ranges[1:]), ranges
    assert hub.cdn_bytes_sent[hub.sha256(REPO, FILE)] < SIZE + 2_000_000, "resumed, not restarted"
    assert leftovers(mesh) == [f"{REPO}/{FILE}"]


def test_a_wrong_hash_is_refused_and_leaves_nothing(mesh, hub):
    hub.corrupt(hub.sha256(REPO, FILE))
    with pytest.raises(ollama.ResponseError) as e:
        list(ollama_client(mesh).pull(f"{REPO}:Q4_K_M", stream=True))
    assert "SHA-256" in str(e.value) and "deleted" in str(e.value) and hub.sha256(REPO, FILE) in str(e.value)
    assert leftovers(mesh) == [], "neither the file nor a partial one"
    assert f"hf.co/{REPO}:Q4_K_M" not in [m["id"] for m in rpc(mesh, "registry.sock", "registry.snapshot")["models"]]


def raw_pull(m, name, stream=True):
    req = urllib.request.Request(m.url(m.ollama) + "/api/pull", data=json.dumps({"model": name, "stream": stream}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            body = r.read().decode()
            return r.status, [json.loads(l) for l in body.splitlines() if l.strip()]
    except urllib.error.HTTPError as e:
        return e.code, [json.loads(e.read())]


@pytest.mark.parametrize("name, fault, status, words", [
    ("hf.co/gated/Model-GGUF", "no-token", 401, "gated"),
    ("hf.co/gated/Model-GGUF", "unapproved", 403, "not been granted"),
    ("hf.co/nobody/Nothing-GGUF", None, 404, "not found"),
    (f"hf.co/{REPO}:Q2_K", None, 404, "no file for the tag Q2_K"),
    (f"hf.co/{REPO}", "rate-limit", 429, "rate-limiting"),
])
def test_hub_errors_are_clear_in_each_callers_shape(hub, tmp_path, name, fault, status, words):
    env = {"HF_ENDPOINT": hub.endpoint}
    if fault == "unapproved":
        env["HF_TOKEN"] = "hf_" + "b" * 34
    if fault == "rate-limit":
        hub.rate_limit(n=100, retry_after=42, bucket="api")
    m = start_mesh({"paths": {"models_dirs": [str(tmp_path)]}}, {"models": {}}, env=env)
    try:
        code, lines = raw_pull(m, name, stream=False)
        assert code == status and words in lines[-1]["error"], (code, lines)
        code, lines = raw_pull(m, name, stream=True)
        assert code == 200 and lines[0] == {"status": "pulling manifest"} and words in lines[-1]["error"]
        req = urllib.request.Request(m.url(m.lmstudio) + "/api/v1/models/download", data=json.dumps({"model": name}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            # A failure known before the download starts is the answer; one found later (a gated file:
            # its listing is public) is the job's status.
            with urllib.request.urlopen(req, timeout=60) as r:
                job = json.loads(r.read())
            st = wait_pull(m, job["job_id"])
            with urllib.request.urlopen(m.url(m.lmstudio) + f"/api/v1/models/download/status/{job['job_id']}", timeout=10) as r:
                shown = json.loads(r.read())
            assert st["phase"] == "failed" and shown["status"] == "failed" and words in shown["error"]
        except urllib.error.HTTPError as e:
            assert e.code == status and words in json.loads(e.read())["error"]["message"]
        if fault == "rate-limit":
            assert "42 s" in lines[-1]["error"]
        assert list(tmp_path.iterdir()) == []
    finally:
        hub.clear_faults()
        stop_mesh(m)


def test_too_little_free_space_is_refused_before_the_first_byte(hub, tmp_path):
    m = start_mesh({"paths": {"models_dirs": [str(tmp_path)]}, "limits": {"download_reserve_bytes": 1 << 60}}, {"models": {}},
                   env={"HF_ENDPOINT": hub.endpoint})
    try:
        hub.clear_log()
        code, lines = raw_pull(m, f"{REPO}:Q4_K_M", stream=False)
        assert code == 507 and "not enough free space" in lines[-1]["error"] and "download_reserve_bytes" in lines[-1]["error"]
        assert hub.count("cdn", "/blobs/") == 0, "nothing was downloaded"
    finally:
        stop_mesh(m)


def test_a_cancelled_pull_keeps_a_resumable_partial_file_and_resumes(mesh, hub):
    hub.throttle(20_000_000)
    status, started = api(mesh, "POST", "/api/models/pull", {"name": f"{REPO}:Q4_K_M"})
    deadline = time.time() + 30
    while True:
        s = rpc(mesh, "registry.sock", "registry.pullStatus", {"job": started["job"]})
        if s["files"] and s["files"][0]["completed"] > 20_000_000 or time.time() > deadline:
            break
        time.sleep(0.05)
    status, cancelled = api(mesh, "DELETE", f"/api/models/pulls/{started['job']}")
    assert status == 200
    final = wait_pull(mesh, started["job"])
    assert final["phase"] == "cancelled" and "resumes" in final["error"]
    left = leftovers(mesh)
    assert left == [f"{REPO}/{FILE}.partial", f"{REPO}/{FILE}.partial.json"], left
    kept = (mesh.models / REPO / (FILE + ".partial")).stat().st_size
    assert 20_000_000 <= kept < SIZE
    hub.throttle(0)
    hub.clear_log()
    assert ollama_client(mesh).pull(f"{REPO}:Q4_K_M", stream=False).status == "success"
    get = [q for q in hub.requests if q["server"] == "cdn" and q["method"] == "GET"]
    assert get[0]["range"] == f"bytes={kept}-", get[0]["range"]
    assert leftovers(mesh) == [f"{REPO}/{FILE}"]


def test_a_pull_resumes_after_the_registry_is_killed(mesh, hub):
    hub.throttle(20_000_000)
    status, started = api(mesh, "POST", "/api/models/pull", {"name": f"{REPO}:Q4_K_M"})
    deadline = time.time() + 30
    while (mesh.models / REPO / (FILE + ".partial")).exists() is False or (mesh.models / REPO / (FILE + ".partial")).stat().st_size < 20_000_000:
        assert time.time() < deadline
        time.sleep(0.05)
    pid = mesh.pid("model-registry")
    os.kill(pid, signal.SIGKILL)
    kept = (mesh.models / REPO / (FILE + ".partial")).stat().st_size
    # The launcher restarts it; the next pull resumes from what is on disk.
    deadline = time.time() + 30
    while True:
        try:
            if rpc(mesh, "registry.sock", "health")["pid"] != pid:
                break
        except Exception:
            pass
        assert time.time() < deadline
        time.sleep(0.1)
    hub.throttle(0)
    hub.clear_log()
    assert ollama_client(mesh).pull(f"{REPO}:Q4_K_M", stream=False).status == "success"
    first = next(q for q in hub.requests if q["server"] == "cdn" and q["method"] == "GET")
    offset = int(first["range"][len("bytes="):-1])
    assert offset >= kept - (1 << 20), (offset, kept)
    assert leftovers(mesh) == [f"{REPO}/{FILE}"]


def test_two_pulls_of_one_file_download_it_once(mesh, hub):
    hub.throttle(40_000_000)
    results = []
    names = [f"hf.co/{REPO}:Q4_K_M", f"{REPO}/{FILE}"]
    threads = [threading.Thread(target=lambda n=n: results.append(raw_pull(mesh, n, stream=False))) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(code for code, _ in results) == [200, 200], results
    assert hub.count("cdn", "/blobs/", method="GET") == 1
    assert hub.cdn_bytes_sent[hub.sha256(REPO, FILE)] == SIZE
    ids = [m["id"] for m in rpc(mesh, "registry.sock", "registry.snapshot")["models"]]
    assert set(names) <= set(ids) or {names[0], "hf.co/" + names[1]} <= set(ids)


def test_pulls_over_https(tmp_path):
    with FakeHub(hub_repos(), tls=True) as secure:
        m = start_mesh({"paths": {"models_dirs": [str(tmp_path)]}}, {"models": {}},
                       env={"HF_ENDPOINT": secure.endpoint, "SSL_CERT_FILE": secure.ca_file})
        try:
            code, lines = raw_pull(m, f"{REPO}:Q4_K_M", stream=False)
            assert code == 200 and lines[-1] == {"status": "success"}, lines
            assert secure.endpoint.startswith("https://") and secure.count("cdn", "/blobs/", method="GET") == 1
        finally:
            stop_mesh(m)
        # Without the CA, the certificate does not verify, and the error says so.
        m = start_mesh({"paths": {"models_dirs": [str(tmp_path / "other")]}}, {"models": {}}, env={"HF_ENDPOINT": secure.endpoint})
        try:
            code, lines = raw_pull(m, f"{REPO}:Q4_K_M", stream=False)
            assert code == 502 and "certificate" in lines[-1]["error"], lines
        finally:
            stop_mesh(m)


def test_the_dashboard_page_pulls_with_a_live_bar_and_cancels(mesh, hub):
    """The Models page in a real headless Chromium: a pull typed into the form shows its bar moving, a second one
    is cancelled with its button, and the pulled model appears in the table with its source."""
    from browser import console_errors, headless_chromium
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def js(script, *args):
        return driver.execute_script(script, *args)

    def pull_state(name):
        return js("const r = [...document.querySelectorAll('#pulls .pull')].find(e => e.querySelector('b').textContent === arguments[0]);"
                  "return r ? {phase: r.dataset.phase, width: r.querySelector('.bar > span').style.width} : null", name)

    hub.throttle(15_000_000)
    driver = headless_chromium()
    try:
        driver.get(f"{mesh.url(mesh.web)}/#/models")
        wait = WebDriverWait(driver, 60, poll_frequency=0.05)
        wait.until(lambda d: d.find_elements(By.ID, "pull-name"))
        driver.find_element(By.ID, "pull-name").send_keys(f"hf.co/{REPO}")
        driver.find_element(By.ID, "pull-quant").send_keys("q4_k_m")
        driver.find_element(By.ID, "pull-start").click()
        model = f"hf.co/{REPO}:q4_k_m"      # named as typed, as Ollama does
        widths = set()
        wait.until(lambda d: (s := pull_state(model)) and (widths.add(s["width"]) or s["phase"] == "done"))
        assert len(widths - {"0%", "100%"}) >= 2, widths       # the bar moved through values between the ends
        wait.until(lambda d: js("const c = document.querySelector(`tr[data-model=\"${arguments[0]}\"] .source`); return c && c.textContent", model) == "hub")
        # A second pull (another quantization), cancelled from its line.
        driver.find_element(By.ID, "pull-name").send_keys(f"{REPO}:Q8_0")
        driver.find_element(By.ID, "pull-start").click()
        other = f"hf.co/{REPO}:Q8_0"
        wait.until(lambda d: (s := pull_state(other)) and s["phase"] == "downloading" and s["width"] not in ("0%", ""))
        js("const r = [...document.querySelectorAll('#pulls .pull')].find(e => e.querySelector('b').textContent === arguments[0]);"
           "r.querySelector('button.pull-cancel').click()", other)
        wait.until(lambda d: pull_state(other)["phase"] == "cancelled")
        assert not js("return !!document.querySelector(`tr[data-model=\"${arguments[0]}\"]`)", other)
        # A bad name is reported in the form.
        driver.find_element(By.ID, "pull-name").send_keys("not a name")
        driver.find_element(By.ID, "pull-start").click()
        wait.until(lambda d: "not a Hugging Face model name" in d.find_element(By.ID, "pull-error").text)
        assert console_errors(driver) == [] or all("400" in e["message"] for e in console_errors(driver))
    finally:
        driver.quit()
        hub.throttle(0)
