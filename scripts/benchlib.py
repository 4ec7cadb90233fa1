"""What the benchmark scripts share: paths, free loopback ports, waiting for health, one RPC call,
llama-server's own spawn-to-ready time, process RSS/PSS and percentiles."""
import http.client, json, os, shutil, signal, socket, subprocess, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def release_bin_dir():
    """Where `swift build -c release` puts the executables."""
    return subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_http(url, timeout=60, process=None):
    """Until `url` answers 200. With `process` (a Popen), fails at once if it exits first, with the
    tail of its stderr when that is a pipe."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            if process is not None and process.poll() is not None:
                tail = process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
                raise SystemExit(f"{url}: the process exited ({process.returncode}) before answering\n{tail}")
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


def timed_stream(conn, body, content_only=False):
    """One streamed chat completion on `conn` (an http.client connection): (time to the first data event,
    or with `content_only` to the first non-empty content delta; total) in ms."""
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    first = None
    while True:
        line = r.readline()
        if not line or line.startswith(b"data: [DONE]"):
            break
        if first is None and line.startswith(b"data:") and (not content_only or (b'"content":"' in line and b'"content":""' not in line)):
            first = time.perf_counter()
    r.read()
    end = time.perf_counter()
    return (first - start) * 1000, (end - start) * 1000


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


def merge(base, extra):
    """`extra` merged into `base`, nested objects key by key (so `{"proxies": {"lmstudio": {"api_keys": …}}}`
    keeps the ports)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Mesh:
    """Llama Runner from the release build on free ports, with its own temporary config and state: the
    one harness of the Python tests (Tests/Python/conftest.py) and the benchmarks. `app` is merged into
    the ports and an empty models_dirs, `models` is the models config. It returns once `/health` answers
    and the launcher counts every service running (a test that kills a service before then would stop
    the whole start). `stop()` ends it with SIGINT (what Ctrl+C does) and removes the directory.
    `bindir` runs another build (an older commit's, for before/after); `bootstrap` first installs what
    is missing (the benchmarks do; the tests run after scripts/test.sh did); `env` is added to the
    services' environment (HF_ENDPOINT, HOME for the tests' own caches)."""
    def __init__(self, prefix, app, models, bindir=None, bootstrap=True, env=None, netns=None, wrap=None):
        if bindir is None:
            if bootstrap:
                subprocess.run([os.path.join(ROOT, "scripts", "bootstrap.sh"), "release"], check=True, stdout=subprocess.DEVNULL)
            bindir = release_bin_dir()
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.ollama, self.lmstudio, self.api, self.web = free_ports(4)
        config, self.state = os.path.join(self.work, "config"), os.path.join(self.work, "state")
        os.makedirs(config)
        # Other tools' caches are not indexed unless a test asks (this machine's own must not leak in).
        no_imports = {"ollama": False, "lmstudio": False, "huggingface": False, "llama_cpp": False}
        doc = merge({"proxies": {"ollama": {"port": self.ollama}, "lmstudio": {"port": self.lmstudio}},
                     "dashboard": {"api_port": self.api, "web_port": self.web}, "paths": {"models_dirs": [], "import": no_imports},
                     "discovery_interval_seconds": 0}, app)
        with open(os.path.join(config, "app_config.json"), "w") as f:
            json.dump(doc, f)
        with open(os.path.join(config, "models_config.json"), "w") as f:
            json.dump(models, f)
        self.errors = os.path.join(self.work, "launcher.err")
        self.config = config
        # `netns`: run it inside that network namespace (a simulated host); `ip netns exec` execs the
        # launcher in place, so the pid is the launcher's own.
        self.netns = netns
        # `wrap`: a command that execs the launcher in place too (a private mount namespace: test_hosts).
        wrap = (["ip", "netns", "exec", netns] if netns else []) + (wrap or [])
        self.launcher = subprocess.Popen(wrap + [os.path.join(bindir, "launcher"), "up", "--state-dir", self.state, "--config-dir", config],
                                         stdout=subprocess.DEVNULL, stderr=open(self.errors, "w"),
                                         env=dict(os.environ, **(env or {})))
        try:
            self._wait_started(60)
        except BaseException:
            self.stop()
            raise

    def _wait_started(self, timeout):
        deadline = time.time() + timeout
        while True:
            try:
                # Inside a namespace its ports are not on this loopback: the launcher's socket says enough.
                if self.netns:
                    if all(s["state"] == "running" for s in rpc(os.path.join(self.state, "run", "launcher.sock"), "launcher.status", timeout=5)["services"]):
                        return
                    raise OSError("not all running yet")
                with urllib.request.urlopen(self.url(self.api) + "/health", timeout=2) as r:
                    if r.status == 200 and all(s["state"] == "running" for s in
                                               rpc(os.path.join(self.state, "run", "launcher.sock"), "launcher.status", timeout=5)["services"]):
                        return
            except Exception:
                pass
            if time.time() > deadline or self.launcher.poll() is not None:
                raise RuntimeError("Llama Runner did not come up: " + open(self.errors).read()[-2000:])
            time.sleep(0.05)

    def url(self, port):
        return f"http://127.0.0.1:{port}"

    @property
    def runners_socket(self):
        return os.path.join(self.state, "run", "runners.sock")

    def pid(self, comm):
        return next(pid for pid, c in children(self.launcher.pid) if c == comm)

    def stop(self, check=False):
        """Ctrl+C; with `check`, the launcher must exit 0 (a clean stop of everything)."""
        self.launcher.send_signal(signal.SIGINT)
        code = self.launcher.wait(timeout=60)
        shutil.rmtree(self.work, ignore_errors=True)
        if check:
            assert code == 0, f"the launcher exited with {code}"
