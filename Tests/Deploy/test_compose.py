"""The image from deploy/Dockerfile and the stack of deploy/docker-compose.yml, run for real with
podman and podman-compose, checked against the containers. Run by scripts/test_deploy.sh
(`make test-deploy`), which builds the base images and the image first.

Podman 4.3 (Debian bookworm's) runs health checks only from systemd timers, and this machine has no
systemd: the fixture runs each container's own check with `podman healthcheck run`, as the timer
would, until it reports healthy. Docker's engine runs them by itself."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import ollama
import openai
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path[:0] = [os.path.join(ROOT, "scripts"), os.path.join(ROOT, "Tests", "Python")]
from benchlib import wait_http  # noqa: E402
from browser import console_errors, headless_chromium  # noqa: E402
COMPOSE = os.path.join(ROOT, "deploy", "docker-compose.yml")
PROJECT = os.environ.get("LLAMA_RUNNER_DEPLOY_PROJECT", "lr-deploy-test")
MODELS = os.environ.get("LLAMA_RUNNER_MODELS", os.path.join(ROOT, "models"))
SERVICES = ["model-registry", "metrics-service", "runner-manager", "gateway"]
OLLAMA, LMSTUDIO, API, WEB = 11434, 1234, 8585, 8080
ENV = dict(os.environ, LLAMA_RUNNER_PUBLISH_HOST="127.0.0.1", LLAMA_RUNNER_MODELS=MODELS)
IMAGE = "localhost/llama-runner:latest"
# The container config binds 0.0.0.0, so dashboard writes need the admin token, as deploy/README.md
# tells an operator to set: the fixture sets one in the config volume before the first start.
TOKEN = "deploy-test-token"


def compose(*args, check=True, timeout=900):
    run = subprocess.run([sys.executable, "-m", "podman_compose", "-p", PROJECT, "-f", COMPOSE, *args],
                         env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"podman-compose {' '.join(args)} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run


def podman(*args, check=True):
    run = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=300)
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {run.stderr[-2000:]}")
    return run


def containers():
    """service name -> inspect document, for this project's containers (running or not)."""
    names = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}", "--format", "{{.Names}}").stdout.split()
    if not names:
        return {}
    docs = json.loads(podman("inspect", *names).stdout)
    return {d["Config"]["Labels"]["com.docker.compose.service"]: d for d in docs}


def health(doc):
    state = doc["State"]
    return (state.get("Health") or state.get("Healthcheck") or {}).get("Status")


def wait_healthy(timeout=240):
    """Runs every container's health check until each reports healthy; returns the inspect documents."""
    deadline = time.time() + timeout
    while True:
        docs = containers()
        pending = [s for s in SERVICES if s not in docs or health(docs[s]) != "healthy"]
        if not pending:
            return docs
        for s in pending:
            if s in docs and docs[s]["State"]["Running"]:
                podman("healthcheck", "run", docs[s]["Name"], check=False)
        if time.time() > deadline:
            logs = {s: podman("logs", "--tail", "20", docs[s]["Name"], check=False).stderr[-1500:] for s in pending if s in docs}
            raise AssertionError(f"not healthy after {timeout} s: {pending}; states "
                                 f"{ {s: (d['State']['Status'], health(d)) for s, d in docs.items()} }; logs {logs}")
        time.sleep(1)


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if data:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def tear_down():
    compose("down", "-v", "-t", "5", check=False)
    for volume in podman("volume", "ls", "-q", "--filter", f"label=io.podman.compose.project={PROJECT}", check=False).stdout.split():
        podman("volume", "rm", "-f", volume, check=False)
    for volume in (f"{PROJECT}_config", f"{PROJECT}_state"):
        podman("volume", "rm", "-f", volume, check=False)


def seed_config_volume():
    """The operator's first step: the `config` volume, seeded from the image on first mount, with
    dashboard.admin_token set."""
    podman("volume", "create", "--label", f"io.podman.compose.project={PROJECT}", f"{PROJECT}_config")
    podman("run", "--rm", "-v", f"{PROJECT}_config:/etc/llama-runner", IMAGE, "sh", "-c",
           f"sed -i 's/\"admin_token\": null/\"admin_token\": \"{TOKEN}\"/' /etc/llama-runner/app_config.json"
           f" && grep -q '{TOKEN}' /etc/llama-runner/app_config.json")


@pytest.fixture(scope="module")
def stack():
    tear_down()  # what a run that was killed may have left
    started = time.time()
    try:
        seed_config_volume()
        compose("up", "-d")
        docs = wait_healthy()
        wait_http(f"http://127.0.0.1:{OLLAMA}/api/version")
        print(f"\nstack up and healthy in {time.time() - started:.1f} s")
        yield docs
    finally:
        tear_down()


def demo_model():
    tags = ollama.Client(host=f"http://127.0.0.1:{OLLAMA}").list().models
    names = [m.model for m in tags if "smollm2" in m.model.lower()]
    assert names, f"the demo model is not listed: {[m.model for m in tags]}"
    return names[0]


def test_every_health_check_turns_healthy(stack):
    assert {s: health(d) for s, d in stack.items()} == {s: "healthy" for s in SERVICES}
    # Each service runs as the image's unprivileged user.
    for s, d in stack.items():
        assert d["Config"]["User"] == "llama", f"{s} runs as {d['Config']['User']!r}"


def test_the_official_clients_chat_through_the_published_ports(stack):
    name = demo_model()
    reply = ollama.Client(host=f"http://127.0.0.1:{OLLAMA}").chat(model=name, messages=[{"role": "user", "content": "Say hi"}],
                                                                   options={"num_predict": 8})
    assert reply.message.content.strip()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{LMSTUDIO}/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8)
    assert completion.choices[0].message.content.strip() and completion.usage.completion_tokens > 0


def test_the_dashboard_loads_in_chromium(stack):
    from selenium.webdriver.support.ui import WebDriverWait
    driver = headless_chromium()
    try:
        driver.get(f"http://127.0.0.1:{WEB}/#/models")
        name = demo_model().split(":")[0]
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "const m = document.querySelector('main[data-page=\"models\"]'); return m && m.innerText"))
        WebDriverWait(driver, 30).until(lambda d: name.lower() in d.find_element("tag name", "main").text.lower())
        assert console_errors(driver) == []
    finally:
        driver.quit()


def test_kill_9_restarts_that_container_and_leaves_the_others_alone(stack):
    before = wait_healthy()
    victim = "metrics-service"
    pid = before[victim]["State"]["Pid"]
    os.kill(pid, signal.SIGKILL)  # the service process, as the host sees it
    deadline = time.time() + 60
    while True:
        now = containers()[victim]
        if now["State"]["Running"] and now["State"]["Pid"] not in (0, pid):
            break
        assert time.time() < deadline, f"{victim} was not restarted: {now['State']}"
        time.sleep(0.5)
    after = wait_healthy()
    assert after[victim]["RestartCount"] >= before[victim]["RestartCount"] + 1
    for s in SERVICES:
        if s != victim:
            assert after[s]["State"]["Pid"] == before[s]["State"]["Pid"], f"{s} was restarted too"
            assert after[s]["State"]["StartedAt"] == before[s]["State"]["StartedAt"]
    status, summary = http("GET", f"http://127.0.0.1:{API}/api/metrics/summary")
    assert status == 200, summary


def test_config_edits_and_backups_survive_down_and_up(stack):
    status, config = http("GET", f"http://127.0.0.1:{API}/api/config")
    assert status == 200, config
    app = config["app"]
    app["limits"]["default_ttl_seconds"] = 1234
    status, saved = http("PUT", f"http://127.0.0.1:{API}/api/config", {"revision": config["revision"], "app": app})
    assert status == 200, saved
    status, backups = http("GET", f"http://127.0.0.1:{API}/api/config/backups")
    assert status == 200 and backups, backups

    # Each service is its container's PID 1: SIGTERM must stop it cleanly, well inside the grace period
    # (exit 0, not the 137 of a SIGKILL after the timeout).
    started = time.time()
    compose("stop", "-t", "20")
    stopped = containers()
    assert {s: d["State"]["ExitCode"] for s, d in stopped.items()} == {s: 0 for s in SERVICES}, \
        {s: (d["State"]["Status"], d["State"]["ExitCode"]) for s, d in stopped.items()}
    assert time.time() - started < 20, f"stopping took {time.time() - started:.1f} s"
    compose("down", "-t", "10")
    assert containers() == {}, "compose down left containers"
    compose("up", "-d")
    wait_healthy()
    wait_http(f"http://127.0.0.1:{API}/health")
    status, config = http("GET", f"http://127.0.0.1:{API}/api/config")
    assert status == 200 and config["app"]["limits"]["default_ttl_seconds"] == 1234, "the edit was lost across down/up"
    status, kept = http("GET", f"http://127.0.0.1:{API}/api/config/backups")
    assert status == 200 and {b["name"] for b in backups} <= {b["name"] for b in kept}, "backups were lost across down/up"
