"""Runner hosts: two simulated machines (network namespaces joined by veth pairs, made and removed here),
each running a whole Llama Runner whose runner-manager serves remote gateways (`runner_host`) with the
real llama-server, and a gateway in this namespace that places models on them (`hosts`). Each host's GPU
is a fake AMD card (a sysfs tree) with a different amount of free memory; the models are real."""
import hashlib
import hmac
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

import benchlib
from conftest import MODEL, bin_dir, call_json, start_mesh, stop_mesh, wait_for
from fakedevices import amd_card
from netns import Fleet  # scripts/netns.py (shared with scripts/bench_hosts.py)

pytestmark = pytest.mark.skipif(not Fleet.available(), reason="network namespaces need root (ip netns add failed)")

SECRET = "9c1f4e2a7b3d5e6f8091a2b3c4d5e6f7"
CONTROL_PORT = 7070
# A name both hosts' addresses are listed under, as a Kubernetes headless Service's is; only the front's
# processes see it (their own /etc/hosts in a private mount namespace).
FLEET_NAME = "fleet.llama-runner.test"


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())




@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    work = tmp_path_factory.mktemp("fleet")
    secret = work / "secret"
    secret.write_text(SECRET + "\n")
    os.chmod(secret, 0o600)
    net = Fleet(2)
    meshes = []
    try:
        # Host 1: 4 GiB free on its GPU; host 2: 14 GiB free. Both have smol and smol-b; only host 2 has smol-h2.
        def start_host(i):
            models = {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
                      "smol-b": {"model_path": MODEL, "parameters": {"ctx_size": 256}}}
            if i == 2:
                # Preloaded: started at runner-manager's start, which must already listen on the host's address with a key.
                models["smol-h2"] = {"model_path": MODEL, "preload": True, "parameters": {"ctx_size": 256}}
            m = start_mesh({
                "runner_host": {"host": net.hosts[i - 1]["address"], "port": CONTROL_PORT, "secret_file": str(secret), "name": f"machine{i}"},
                "hardware": {"nvml": False, "nvidia_smi": "", "sysfs_root": str(work / f"sys{i}"), "sample_interval_seconds": 0.5},
                "limits": {"max_loaded_models": 3},
            }, {"models": models}, netns=net.hosts[i - 1]["ns"])
            meshes.append(m)
            return m

        for i, used in ((1, 12 << 10), (2, 2 << 10)):
            amd_card(str(work / f"sys{i}"), 0, f"0000:0{i}:00.0", 16 << 10, used)
            start_host(i)
        hosts = {f"h{i}": {"address": f"{net.hosts[i - 1]['address']}:{CONTROL_PORT}", "secret_file": str(secret)} for i in (1, 2)}
        # A host whose secret file is missing: shown down with the reason, never contacted.
        hosts["nosecret"] = {"address": f"{net.hosts[0]['address']}:{CONTROL_PORT}", "secret_file": str(work / "missing")}
        etc_hosts = work / "etc-hosts"
        etc_hosts.write_text(open("/etc/hosts").read() + "".join(f"{h['address']} {FLEET_NAME}\n" for h in net.hosts))
        private_hosts = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(etc_hosts)]
        front = start_mesh({"hosts": hosts}, {"models": {}}, wrap=private_hosts)
        meshes.append(front)
        yield {"net": net, "hosts": meshes[:2], "front": front, "work": work, "start_host": start_host}
    finally:
        for m in meshes:
            try:
                stop_mesh(m)
            except Exception as e:  # a host a test killed parts of still has its launcher to stop
                print("stopping a mesh:", e)
        net.remove()


def hosts_of(front):
    return {h["name"]: h for h in get(front.url(front.api) + "/api/hosts")}


def chat(front, model, **kw):
    oai = openai.OpenAI(base_url=front.url(front.ollama) + "/v1", api_key="x", max_retries=0)
    raw = oai.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": "Say hi"}],
                                                         max_tokens=4, temperature=0, **kw)
    return raw.headers.get("x-llama-runner-host"), raw.parse()


def long_stream(front, model):
    """A long streamed chat on a thread: its lines so far, an event set when it ended, and the thread."""
    events, ended = [], threading.Event()

    def stream():
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Tell a very long story."}], "max_tokens": 2000, "stream": True})
        req = urllib.request.Request(front.url(front.ollama) + "/v1/chat/completions", data=body.encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                for line in r:
                    events.append(line.decode().strip())
        finally:
            ended.set()

    t = threading.Thread(target=stream)
    t.start()
    return events, ended, t


def test_hosts_are_reported_with_their_models(fleet):
    front = fleet["front"]
    hosts = wait_for("both hosts up", lambda: (lambda h: h if all(h.get(n, {}).get("state") == "up" for n in ("h1", "h2")) else None)(hosts_of(front)))
    assert hosts["h2"]["reportedName"] == "machine2" and "smol-h2" in hosts["h2"]["models"] and "smol-h2" not in hosts["h1"]["models"]
    assert hosts["h2"]["freeBytes"] > hosts["h1"]["freeBytes"] and hosts["local"]["state"] == "up"
    assert hosts["nosecret"]["state"] == "down" and "cannot read the shared secret file" in hosts["nosecret"]["error"]
    ids = [m["id"] for m in get(front.url(front.ollama) + "/v1/models")["data"]]
    assert "smol" in ids and "smol-h2" in ids, ids
    out = subprocess.run([os.path.join(bin_dir(), "launcher"), "status", "--state-dir", front.state, "--config-dir", front.config],
                         capture_output=True, text=True, timeout=30).stdout
    assert "HOST" in out and any(line.startswith("h2") and " up " in line for line in out.splitlines()), out


def test_metrics_carry_the_hosts(fleet):
    """metrics-service samples the remote hosts too: their state, free memory and GPUs, by host."""
    front = fleet["front"]

    def scraped():
        with urllib.request.urlopen(front.url(front.api) + "/metrics", timeout=10) as r:
            text = r.read().decode()
        up = 'llama_runner_host_up{host="h1"} 1' in text and 'llama_runner_host_up{host="h2"} 1' in text
        return text if up and 'llama_runner_host_gpu_memory_bytes{device="0000:02:00.0",host="h2",kind="total"} 17179869184' in text else None

    text = wait_for("the hosts and their GPUs in /metrics", scraped, timeout=15, every=0.5)
    assert 'llama_runner_host_free_bytes{host="h2"} ' in text


def test_placement_prefers_loaded_then_free_memory(fleet):
    front = fleet["front"]
    host, r = chat(front, "smol")
    assert host == "h2" and r.choices[0].message.content is not None  # the most free GPU memory
    assert chat(front, "smol-h2")[0] == "h2"  # the only host with the file
    # Host 2 fills up; smol stays where it is loaded, a model loaded nowhere goes to the freer host 1 now.
    sysfs2 = fleet["work"] / "sys2" / "class" / "drm" / "card0" / "device" / "mem_info_vram_used"
    sysfs2.write_text(f"{(16 << 10) - 512 << 20}\n")
    wait_for("host 2 fuller", lambda: hosts_of(front)["h2"]["freeBytes"] < hosts_of(front)["h1"]["freeBytes"])
    assert chat(front, "smol")[0] == "h2"
    assert chat(front, "smol-b")[0] == "h1"
    # (The hosts' runner lists come with their heartbeats, every half second.)
    ready = lambda: {(h["name"], r["model"]) for h in hosts_of(front).values() for r in h["runners"] if r["state"] == "ready"}
    wait_for("the runners where they were placed", lambda: {("h2", "smol"), ("h2", "smol-h2"), ("h1", "smol-b")} <= ready(), timeout=5)
    sysfs2.write_text(f"{2 << 30}\n")
    wait_for("host 2 freer again", lambda: hosts_of(front)["h2"]["freeBytes"] > hosts_of(front)["h1"]["freeBytes"])


def test_a_runner_port_is_closed_without_its_key(fleet):
    """The runners listen on the host's address, reachable from here, but answer only with their own key."""
    front = fleet["front"]
    runners = {r["model"]: r for r in hosts_of(front)["h2"]["runners"] if r["state"] == "ready"}
    assert {"smol", "smol-h2"} <= set(runners), runners
    assert all(r["endpoint"].startswith("http://" + fleet["net"].hosts[1]["address"] + ":") for r in runners.values())
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    for runner, headers in [(r, h) for r in runners.values() for h in ({}, {"Authorization": "Bearer lr-guess"})]:
        req = urllib.request.Request(runner["endpoint"] + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json", **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 401


def test_the_dashboard_shows_the_hosts(fleet):
    """The Overview's Hosts card (in a real headless Chromium) lists every host with its state and what it runs."""
    from browser import SHOTS, console_errors, headless_chromium, open_page, wait
    front = fleet["front"]
    driver = headless_chromium()
    try:
        open_page(driver, front, "overview")
        rows = wait(driver, lambda d: d.execute_script(
            "return [...document.querySelectorAll('#hosts tr[data-host]')].map(r => [r.dataset.host, r.lastChild.textContent, r.textContent])"
            ).__len__() == 4 and d.execute_script(
            "return [...document.querySelectorAll('#hosts tr[data-host]')].map(r => [r.dataset.host, r.lastChild.textContent, r.textContent])"))
        states = {name: state for name, state, _ in rows}
        assert states == {"local": "up", "h1": "up", "h2": "up", "nosecret": "down"}, rows
        assert "smol" in next(text for name, _, text in rows if name == "h2")
        assert not driver.find_element("id", "hosts").get_attribute("hidden")
        # The card holds its rows: nothing runs past its right edge.
        assert driver.execute_script("const c = document.getElementById('hosts'); return c.scrollWidth <= c.clientWidth + 1")
        os.makedirs(SHOTS, exist_ok=True)
        driver.save_screenshot(os.path.join(SHOTS, "overview-hosts.png"))
        assert console_errors(driver) == []
    finally:
        driver.quit()


def handshake(address, answer):
    """Speaks the control plane's handshake by hand; `answer(challenge)` gives the line to send back."""
    s = socket.create_connection((address, CONTROL_PORT), timeout=10)
    f = s.makefile("rwb")
    hello = json.loads(f.readline())
    f.write(answer(hello["challenge"]))
    f.flush()
    verdict = json.loads(f.readline() or b"{}")
    # A refused connection is closed by the server; an accepted one stays open for calls.
    closed = "error" in verdict and f.readline() == b""
    s.close()
    return hello, verdict, closed


def test_the_control_plane_refuses_a_wrong_secret_and_a_replayed_answer(fleet):
    address = fleet["net"].hosts[0]["address"]
    tag = lambda key, *parts: hmac.new(key, " ".join(("llama-runner-rpc-1",) + parts).encode(), hashlib.sha256).hexdigest()
    nonce = os.urandom(32).hex()
    lines = {}

    def right(challenge):
        lines["answer"] = (json.dumps({"nonce": nonce, "response": tag(SECRET.encode(), "client", challenge, nonce)}) + "\n").encode()
        return lines["answer"]

    hello, verdict, _ = handshake(address, right)
    assert verdict["ok"] is True and verdict["proof"] == tag(SECRET.encode(), "server", nonce, hello["challenge"])
    # The same answer again: a new challenge, so it is refused, and the connection closed before any call.
    hello2, verdict, closed = handshake(address, lambda challenge: lines["answer"])
    assert hello2["challenge"] != hello["challenge"] and "wrong secret" in verdict["error"] and closed
    _, verdict, closed = handshake(address, lambda c: (json.dumps({"nonce": nonce, "response": tag(b"not the secret at all!!", "client", c, nonce)}) + "\n").encode())
    assert "wrong secret" in verdict["error"] and closed
    # A JSON-RPC call without the handshake is not served either.
    _, verdict, closed = handshake(address, lambda c: b'{"jsonrpc":"2.0","id":1,"method":"runners.list"}\n')
    assert "authentication failed" in verdict["error"] and closed


def test_a_cut_link_fails_over_and_the_host_rejoins(fleet):
    """Host 2's link goes down mid-stream: within 2 s it is down, the stream ends with an error event, the
    next request for its model is served by host 1; once the link is back, host 2 is used again."""
    front, net = fleet["front"], fleet["net"]
    assert chat(front, "smol")[0] == "h2"
    events, ended, t = long_stream(front, "smol")
    wait_for("the stream to start", lambda: sum(e.startswith("data: ") for e in events) >= 3, timeout=30)
    cut_at = time.time()
    net.cut(2)
    try:
        wait_for("host 2 down", lambda: hosts_of(front)["h2"]["state"] == "down", timeout=10, every=0.02)
        down_after = time.time() - cut_at
        assert ended.wait(10), "the stream did not end"
        errors = [json.loads(e[6:]) for e in events if e.startswith("data: {") and '"error"' in e]
        assert errors and "h2" in errors[-1]["error"]["message"], events[-3:]
        host, r = chat(front, "smol")
        gap = time.time() - cut_at
        assert host == "h1" and r.choices
        print(f"host marked down {down_after:.2f} s after the cut; first success elsewhere {gap:.2f} s after it")
        assert down_after < 2.5
        # While host 2 is down, its only model answers 503 at once.
        start = time.time()
        with pytest.raises(openai.APIStatusError) as unavailable:
            chat(front, "smol-h2")
        assert unavailable.value.status_code == 503 and "h2" in unavailable.value.message and time.time() - start < 2
    finally:
        net.mend(2)
        t.join(30)
    wait_for("host 2 back", lambda: hosts_of(front)["h2"]["state"] == "up", timeout=20)
    assert chat(front, "smol-h2")[0] == "h2"


def test_a_host_whose_processes_die_fails_over_and_comes_back(fleet):
    """Every process of host 1 is killed (its launcher, services and runners, as a power cut would): it is
    down within 2 s and its model is served by host 2; a Llama Runner started there again rejoins by itself."""
    front, h1 = fleet["front"], fleet["hosts"][0]
    assert chat(front, "smol-b")[0] == "h1"
    tree, frontier = [], [h1.launcher.pid]
    while frontier:
        pid = frontier.pop()
        tree.append(pid)
        frontier += [p for p, _ in benchlib.children(pid)]
    killed_at = time.time()
    for pid in tree:
        os.kill(pid, 9)
    wait_for("host 1 down", lambda: hosts_of(front)["h1"]["state"] == "down", timeout=10, every=0.02)
    down_after = time.time() - killed_at
    assert chat(front, "smol-b")[0] == "h2"
    print(f"host marked down {down_after:.2f} s after its processes were killed; served elsewhere {time.time() - killed_at:.2f} s after")
    assert down_after < 2.5
    fleet["start_host"](1)
    wait_for("host 1 back", lambda: hosts_of(front)["h1"]["state"] == "up", timeout=30)


def test_hosts_follow_config_edits_and_discover_names(fleet):
    """`hosts` applies without a restart: removing a host ends the requests its runners were answering
    and drops it; a `discover` entry whose name resolves to both machines becomes a host per address
    (placed on, sampled by metrics-service); putting the old config back brings the old hosts back."""
    front, net, work = fleet["front"], fleet["net"], fleet["work"]
    api = front.url(front.api)
    wait_for("both hosts up", lambda: all(hosts_of(front).get(n, {}).get("state") == "up" for n in ("h1", "h2")), timeout=30)
    assert chat(front, "smol")[0] == "h2"
    status, config = call_json("GET", api + "/api/config")
    original = json.loads(json.dumps(config["app"]))
    events, ended, t = long_stream(front, "smol")
    try:
        wait_for("the stream to start", lambda: sum(e.startswith("data: ") for e in events) >= 3, timeout=30)
        edited = json.loads(json.dumps(original))
        del edited["hosts"]["h2"]
        edited["hosts"]["fleet"] = {"address": f"{FLEET_NAME}:{CONTROL_PORT}", "secret_file": str(work / "secret"), "discover": True}
        status, body = call_json("PUT", api + "/api/config", {"revision": config["revision"], "app": edited})
        assert status == 200, body
        assert call_json("GET", api + "/api/config")[1]["restart"] == [], "a hosts edit needs no restart"
        assert ended.wait(15), "the stream on the removed host did not end"
        errors = [json.loads(e[6:]) for e in events if e.startswith("data: {") and '"error"' in e]
        assert errors and "removed" in errors[-1]["error"]["message"], events[-3:]
        a1, a2 = (f"fleet@{h['address']}" for h in net.hosts)
        hosts = wait_for("the discovered hosts up", lambda: (lambda h: h if "h2" not in h and all(h.get(n, {}).get("state") == "up" for n in (a1, a2)) else None)(hosts_of(front)), timeout=20)
        assert hosts[a2]["reportedName"] == "machine2" and hosts[a1]["reportedName"] == "machine1" and hosts["h1"]["state"] == "up"
        assert chat(front, "smol-h2")[0] == a2

        def scraped():
            with urllib.request.urlopen(api + "/metrics", timeout=10) as r:
                text = r.read().decode()
            return text if f'llama_runner_host_up{{host="{a2}"}} 1' in text and 'host="h2"' not in text else None
        wait_for("metrics-service sampling the discovered hosts", scraped, timeout=30, every=0.5)
        # Machine 2 leaves the name (a pod gone from the headless Service): at the next look-up it is no longer a host.
        etc_hosts = work / "etc-hosts"
        listed = etc_hosts.read_text()
        with open(etc_hosts, "r+") as f:  # in place: the front's /etc/hosts is this file, bind-mounted
            f.write(listed.replace(f"{net.hosts[1]['address']} {FLEET_NAME}\n", ""))
            f.truncate()
        try:
            left = wait_for("machine 2 gone from the discovered hosts", lambda: (lambda h: h if a2 not in h else None)(hosts_of(front)), timeout=25)
            assert left[a1]["state"] == "up"
        finally:
            etc_hosts.write_text(listed)
    finally:
        t.join(30)
        status, now = call_json("GET", api + "/api/config")
        assert call_json("PUT", api + "/api/config", {"revision": now["revision"], "app": original})[0] == 200
    hosts = wait_for("the configured hosts back", lambda: (lambda h: h if not any(n.startswith("fleet@") for n in h) and h.get("h2", {}).get("state") == "up" else None)(hosts_of(front)), timeout=20)
    assert set(hosts) == {"local", "h1", "h2", "nosecret"}
    assert chat(front, "smol-h2")[0] == "h2"
