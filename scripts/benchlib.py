"""What the benchmark scripts share: paths, free loopback ports, waiting for health, one RPC call,
llama-server's own spawn-to-ready time, process RSS/PSS and percentiles."""
import http.client, json, os, shutil, signal, socket, subprocess, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_http(url, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def rpc(path, method, params=None, timeout=300):
    """One JSON-RPC call over a service's Unix socket; its result, or RuntimeError with its error."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
    s.close()
    reply = json.loads(buf)
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kb(pid):
    """Proportional set size: private pages plus a share of pages mapped by several processes (the five
    services share libswiftCore and libc, which RSS counts in full for each)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [(int(p), c) for p, c in (line.split(None, 1) for line in out.splitlines())]


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def healthy(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/health")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def direct_run(binary, extra=("--ctx-size", "512")):
    """llama-server's own spawn-to-ready time in ms: spawned here, /health polled every 2 ms."""
    port = free_ports(1)[0]
    start = time.perf_counter()
    p = subprocess.Popen([binary, "--model", MODEL, *extra, "--host", "127.0.0.1", "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while not healthy(port):
        if p.poll() is not None:
            raise SystemExit("llama-server exited during the direct run")
        time.sleep(0.002)
    elapsed = (time.perf_counter() - start) * 1000
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    return elapsed


class Report:
    """The lines of a benchmark's final report: printed as they come, and kept for `--markdown FILE`
    (`make bench` gathers every report into docs/benchmarks.md)."""
    def __init__(self):
        self.lines = []

    def __call__(self, line=""):
        print(line)
        self.lines.extend(str(line).split("\n"))

    def write(self, path):
        if path:
            with open(path, "w") as f:
                f.write("\n".join(self.lines).strip("\n") + "\n")


class Mesh:
    """Llama Runner from the release build (bootstrapped first) on free ports, with its own temporary
    config and state: `app` is merged into the ports and an empty models_dirs, `models` is the models
    config. `stop()` ends it with SIGINT (what Ctrl+C does) and removes the directory."""
    def __init__(self, prefix, app, models, bindir=None):
        if bindir is None:  # another build (an older commit's, for before/after) is used as it is
            subprocess.run([os.path.join(ROOT, "scripts", "bootstrap.sh"), "release"], check=True, stdout=subprocess.DEVNULL)
            bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                                    capture_output=True, text=True).stdout.strip()
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.ollama, self.lmstudio, self.api, self.web = free_ports(4)
        config, self.state = os.path.join(self.work, "config"), os.path.join(self.work, "state")
        os.makedirs(config)
        doc = {"proxies": {"ollama": {"port": self.ollama}, "lmstudio": {"port": self.lmstudio}},
               "dashboard": {"api_port": self.api, "web_port": self.web}, "paths": {"models_dirs": []},
               "discovery_interval_seconds": 0, **app}
        with open(os.path.join(config, "app_config.json"), "w") as f:
            json.dump(doc, f)
        with open(os.path.join(config, "models_config.json"), "w") as f:
            json.dump(models, f)
        self.launcher = subprocess.Popen([os.path.join(bindir, "launcher"), "up", "--state-dir", self.state, "--config-dir", config],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{self.api}/health")
        except BaseException:
            self.stop()
            raise

    @property
    def runners_socket(self):
        return os.path.join(self.state, "run", "runners.sock")

    def pid(self, comm):
        return next(pid for pid, c in children(self.launcher.pid) if c == comm)

    def stop(self):
        self.launcher.send_signal(signal.SIGINT)
        self.launcher.wait(timeout=60)
        shutil.rmtree(self.work, ignore_errors=True)
