"""Sturdy under faults: leases owned by their connection, restarts that clients do not see, and
cancellation races that never leave a lease behind. A mesh of its own, since these tests kill its
services; the real llama-server and the launcher's own restarts."""
import concurrent.futures
import http.client
import json
import os
import random
import signal
import socket
import threading
import time

import httpx
import openai
import pytest

from conftest import MODEL, rpc, start_mesh, stop_mesh


@pytest.fixture(scope="module")
def fault_mesh():
    m = start_mesh({"limits": {"max_loaded_models": 2}}, {"models": {
        "smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048, "parallel": 4}, "ttl_seconds": 600},
    }})
    # Loaded once, so the tests measure restarts, not the first load.
    rpc(m, "runners.sock", "runners.load", {"model": "smol"})
    yield m
    stop_mesh(m)


def runner(m):
    return next(r for r in rpc(m, "runners.sock", "runners.list") if r["model"] == "smol")


def service_pid(m, name):
    status = rpc(m, "launcher.sock", "launcher.status")
    return next(s["pid"] for s in status["services"] if s["name"] == name)


def wait_service_replaced(m, name, old_pid, timeout=30):
    """Until the launcher reports a new, running instance of `name`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status = rpc(m, "launcher.sock", "launcher.status")
            s = next(s for s in status["services"] if s["name"] == name)
            if s.get("pid") and s["pid"] != old_pid and s["state"] == "running":
                return s["pid"]
        except (OSError, RuntimeError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{name} was not restarted within {timeout} s")


def wait_for(predicate, timeout, step=0.01):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


LONG = {"model": "smol", "messages": [{"role": "user", "content": "Write a very long story about a dragon and a knight."}],
        "max_tokens": 4000, "temperature": 1.0, "stream": True}


def test_kill_9_of_the_gateway_with_three_streams_open_releases_their_leases_within_a_second(fault_mesh):
    m = fault_mesh
    started = threading.Barrier(4)
    endings = []

    def stream():
        try:
            with httpx.Client(timeout=httpx.Timeout(30, read=30)) as client:
                with client.stream("POST", m.url(m.lmstudio) + "/v1/chat/completions", json=LONG) as r:
                    lines = r.iter_lines()
                    next(lines)
                    started.wait(timeout=30)
                    for _ in lines:
                        pass
            endings.append("ended")
        except (httpx.HTTPError, http.client.HTTPException, OSError) as e:
            endings.append(type(e).__name__)

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    started.wait(timeout=30)
    assert runner(m)["activeLeases"] == 3
    gateway = service_pid(m, "gateway")
    os.kill(gateway, signal.SIGKILL)
    killed = time.time()
    assert wait_for(lambda: runner(m)["activeLeases"] == 0, 1.0), f"leases after 1 s: {runner(m)['activeLeases']}"
    released_ms = (time.time() - killed) * 1000
    info = runner(m)
    assert info["expiresInSeconds"] is not None and info["expiresInSeconds"] > 590, "the idle TTL countdown started"
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive(), "a client of the dead gateway hangs"
    assert len(endings) == 3
    wait_service_replaced(m, "gateway", gateway)
    print(f"leases released {released_ms:.0f} ms after kill -9 of the gateway; clients saw {endings}")


def chat_load(m, port, stop, failures, successes):
    client = openai.OpenAI(base_url=m.url(port) + "/v1", api_key="unused", max_retries=0, timeout=60)
    while not stop.is_set():
        try:
            r = client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0)
            assert r.choices[0].message.content is not None
            successes.append(1)
        except Exception as e:  # noqa: BLE001 -- every failure is counted and reported
            failures.append(f"{type(e).__name__}: {e}")


@pytest.mark.parametrize("service", ["runner-manager", "model-registry", "metrics-service"])
def test_kill_9_of_a_backend_service_under_eight_clients_fails_no_request(fault_mesh, service):
    m = fault_mesh
    stop, failures, successes = threading.Event(), [], []
    workers = [threading.Thread(target=chat_load, args=(m, m.ollama if i % 2 else m.lmstudio, stop, failures, successes)) for i in range(8)]
    for w in workers:
        w.start()
    try:
        assert wait_for(lambda: len(successes) >= 16, 30), "the load did not start"
        for _ in range(2):
            pid = service_pid(m, service)
            before = len(successes)
            os.kill(pid, signal.SIGKILL)
            wait_service_replaced(m, service, pid)
            assert wait_for(lambda: len(successes) >= before + 16, 30), "requests did not go on after the restart"
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=60)
    assert failures == [], f"{len(failures)} of {len(failures) + len(successes)} requests failed: {failures[:3]}"
    if service == "runner-manager":
        assert runner(m)["adopted"], "the new runner-manager adopted the runner instead of reloading it"
    assert wait_for(lambda: runner(m)["activeLeases"] == 0, 2)
    print(f"kill -9 of {service} twice: {len(successes)} requests, 0 failed")


def test_kill_9_or_restart_of_the_gateway_under_load_refuses_no_connection_and_hangs_no_client(fault_mesh):
    m = fault_mesh
    stop = threading.Event()
    refused, other, ok, in_flight_endings = [], [], [], []

    def fresh_connections():
        # A new connection per request: what a client that connects during the restart sees.
        while not stop.is_set():
            c = http.client.HTTPConnection("127.0.0.1", m.ollama, timeout=30)
            try:
                c.request("GET", "/api/version")
                r = c.getresponse()
                r.read()
                ok.append(r.status)
            except ConnectionRefusedError:
                refused.append(1)
            except (http.client.HTTPException, OSError) as e:
                other.append(type(e).__name__)  # in flight on the dead gateway: closed, never hung
            finally:
                c.close()

    def long_stream():
        start = time.time()
        try:
            with httpx.Client(timeout=httpx.Timeout(30, read=30)) as client:
                with client.stream("POST", m.url(m.lmstudio) + "/v1/chat/completions", json=LONG) as r:
                    for _ in r.iter_lines():
                        pass
            in_flight_endings.append(("ended", time.time() - start))
        except (httpx.HTTPError, OSError) as e:
            in_flight_endings.append((type(e).__name__, time.time() - start))

    pollers = [threading.Thread(target=fresh_connections) for _ in range(4)]
    streamer = threading.Thread(target=long_stream)
    for t in pollers + [streamer]:
        t.start()
    try:
        assert wait_for(lambda: len(ok) >= 100, 30)
        time.sleep(0.3)  # the stream is under way
        for _ in range(2):
            pid = service_pid(m, "gateway")
            os.kill(pid, signal.SIGKILL)
            wait_service_replaced(m, "gateway", pid)
            before = len(ok)
            assert wait_for(lambda: len(ok) >= before + 100, 30)
        # A restart on request (graceful: the old gateway stops accepting, the next one takes over).
        pid = service_pid(m, "gateway")
        rpc(m, "launcher.sock", "launcher.restart", {"service": "gateway"})
        assert service_pid(m, "gateway") != pid
        before = len(ok)
        assert wait_for(lambda: len(ok) >= before + 100, 30)
    finally:
        stop.set()
        for t in pollers + [streamer]:
            t.join(timeout=40)
    assert refused == [], f"{len(refused)} connections refused"
    assert not streamer.is_alive() and in_flight_endings and in_flight_endings[0][1] < 30, f"the in-flight stream: {in_flight_endings}"
    print(f"two kill -9 and a restart: {len(ok)} requests answered, 0 refused, {len(other)} in flight closed ({sorted(set(other))}), stream: {in_flight_endings}")


class RawRPC:
    """A runner-manager control connection of our own, to cut it at any moment."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""

    def send(self, message):
        self.sock.sendall((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())

    def reply(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


def test_acquires_cancelled_at_random_moments_around_their_grant_leave_no_lease(fault_mesh):
    m = fault_mesh
    path = os.path.join(m.state, "run", "runners.sock")
    rng = random.Random(14)
    outcomes = {"granted then dropped": 0, "cancelled while queued": 0, "vanished": 0}
    rounds = 300
    for i in range(rounds):
        # A holder fills the runner's four slots, so the round's acquire queues until one is released.
        holder = RawRPC(path)
        for n in range(4):
            holder.send({"id": n + 1, "method": "runners.acquire", "params": {"model": "smol"}})
        leases = [holder.reply()["result"]["lease"] for _ in range(4)]
        c = RawRPC(path)
        c.send({"id": 1, "method": "runners.acquire", "params": {"model": "smol"}})
        # The slot frees and the caller gives up in either order, a moment apart.
        steps = [lambda: holder.send({"id": 9, "method": "runners.release", "params": {"lease": leases[0]}})]
        how = rng.randrange(2)
        steps.append((lambda: c.send({"method": "rpc.cancel", "params": {"id": 1}})) if how == 0 else c.close)
        rng.shuffle(steps)
        for step in steps:
            step()
            time.sleep(rng.random() * 0.002)
        if how == 0:
            reply = c.reply()
            outcomes["granted then dropped" if "result" in reply else "cancelled while queued"] += 1
            c.close()
        else:
            outcomes["vanished"] += 1
        holder.close()  # its three other leases go with its connection
    assert wait_for(lambda: runner(m)["activeLeases"] == 0, 1.0), f"{runner(m)['activeLeases']} leases left after {rounds} rounds"
    assert outcomes["granted then dropped"] > 0 and outcomes["cancelled while queued"] > 0, outcomes
    # The runner still serves at full concurrency.
    client = openai.OpenAI(base_url=m.url(m.lmstudio) + "/v1", api_key="unused", max_retries=0, timeout=60)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "hi"}], max_tokens=2), range(4)))
    assert runner(m)["queued"] == 0
    print(f"{rounds} rounds: {outcomes}; 0 leases left")


def test_a_socket_activated_launcher_serves_on_the_sockets_it_was_handed(tmp_path):
    """What systemd does with deploy/systemd/llama-runner.socket: the ports are bound before the launcher
    starts and handed down as descriptors 3.. (LISTEN_FDS, LISTEN_PID). This test holds its own copy of
    each socket until the mesh is healthy, so a launcher or gateway that bound the ports itself would
    fail with 'address in use'."""
    import subprocess
    from conftest import bin_dir, free_ports
    ports = free_ports(4)
    config = tmp_path / "config"
    config.mkdir()
    (config / "app_config.json").write_text(json.dumps({
        "proxies": {"ollama": {"port": ports[0]}, "lmstudio": {"port": ports[1]}},
        "dashboard": {"api_port": ports[2], "web_port": ports[3]}, "paths": {"models_dirs": []}, "discovery_interval_seconds": 0}))
    (config / "models_config.json").write_text(json.dumps({"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 512}}}}))
    listeners = []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        listeners.append(s)
    # Shuffled: the launcher matches sockets to ports, not to positions.
    order = [2, 0, 3, 1]
    fds = [listeners[i].fileno() for i in order]

    def place():
        staged = [os.dup(fd) for fd in fds]
        for i, fd in enumerate(staged):
            os.dup2(fd, 3 + i)
        for fd in staged:
            os.close(fd)

    state = tmp_path / "state"
    launcher = os.path.join(bin_dir(), "launcher")
    # LISTEN_PID must be the launcher's own pid, which only the child knows: sh sets it, then execs.
    process = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', launcher, "up", "--state-dir", str(state), "--config-dir", str(config)],
                               env={**os.environ, "LISTEN_FDS": "4"}, preexec_fn=place, close_fds=False,
                               stdout=subprocess.DEVNULL, stderr=open(tmp_path / "launcher.err", "w"))
    try:
        assert wait_for(lambda: _healthy(ports[2]), 60, step=0.1), (tmp_path / "launcher.err").read_text()[-2000:]
        for s in listeners:
            s.close()  # only the mesh holds them now
        assert httpx.get(f"http://127.0.0.1:{ports[0]}/api/version", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports[1]}/v1/models", timeout=10).json()["data"][0]["id"] == "smol"
        assert httpx.get(f"http://127.0.0.1:{ports[3]}/", timeout=10).status_code == 200
        # And a gateway restart keeps them: the launcher passes on what systemd gave it.
        m = type("StateOnly", (), {"state": str(state)})()  # what service_pid needs of a mesh
        gateway = wait_service_replaced(m, "gateway", None)  # running, as the launcher sees it
        os.kill(gateway, signal.SIGKILL)
        assert wait_for(lambda: _gone(gateway), 5), "the gateway did not die"
        c = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=30)
        c.request("GET", "/api/version")  # waits in the backlog for the next gateway
        assert c.getresponse().status == 200
        c.close()
    finally:
        for s in listeners:
            s.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0


def _healthy(port):
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _gone(pid):
    """Dead: no such process, or a zombie waiting for the launcher to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        # Reaped before the open (ENOENT) or between the open and the read (ESRCH).
        return True
