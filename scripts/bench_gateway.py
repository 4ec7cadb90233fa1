#!/usr/bin/env python3
"""Gateway overhead on a real request (issue 6).

The same small request (SmolLM2, max_tokens 8, temperature 0, streamed) is sent alternately straight to
the runner's llama-server and through the gateway, 200 pairs. Prints median and p99 of time to first
token (first SSE data event) and total time, and the differences (the gateway's added time; goal:
median under 0.5 ms). Release builds, keep-alive connections on both sides. Figures, not assertions.
Usage: python3 scripts/bench_gateway.py [--pairs 200]
"""
import argparse, http.client, json, os, shutil, signal, socket, statistics, subprocess, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
BODY = json.dumps({"model": "smol", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8,
                   "temperature": 0, "stream": True}).encode()


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def rpc(path, method, params=None):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}) + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        buf += s.recv(1 << 20)
    s.close()
    return json.loads(buf)["result"]


def timed(conn):
    """One streamed request on a kept-alive connection: (time to first data event, total) in ms."""
    start = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=BODY, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    first = None
    while True:
        line = r.readline()
        if not line:
            break
        if first is None and line.startswith(b"data:"):
            first = time.perf_counter()
        if line.startswith(b"data: [DONE]"):
            break
    r.read()
    end = time.perf_counter()
    return (first - start) * 1000, (end - start) * 1000


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=200)
    args = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "scripts", "bootstrap.sh"), "release"], check=True, stdout=subprocess.DEVNULL)
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="lr-bench-gw-")
    ollama, lmstudio, api, web = free_ports(4)
    config, state = os.path.join(work, "config"), os.path.join(work, "state")
    os.makedirs(config)
    json.dump({"proxies": {"ollama": {"port": ollama}, "lmstudio": {"port": lmstudio}}, "dashboard": {"api_port": api, "web_port": web},
               "paths": {"models_dirs": []}, "discovery_interval_seconds": 0}, open(os.path.join(config, "app_config.json"), "w"))
    json.dump({"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 1024, "parallel": 1}}}},
              open(os.path.join(config, "models_config.json"), "w"))
    launcher = subprocess.Popen([os.path.join(bindir, "launcher"), "up", "--state-dir", state, "--config-dir", config],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        gateway = http.client.HTTPConnection("127.0.0.1", lmstudio, timeout=60)
        timed(gateway)  # loads the model
        endpoint = rpc(os.path.join(state, "run", "runners.sock"), "runners.list")[0]["endpoint"]
        runner_port = int(endpoint.rsplit(":", 1)[1])

        class Direct:
            """llama-server closes the connection after each streamed response: a new one per request."""
            def request(self, *a, **k):
                self.conn = http.client.HTTPConnection("127.0.0.1", runner_port, timeout=60)
                self.conn.request(*a, **k)

            def getresponse(self):
                return self.conn.getresponse()

        direct = Direct()
        for _ in range(10):
            timed(direct)
            timed(gateway)
        d_ttft, d_total, g_ttft, g_total = [], [], [], []
        for i in range(args.pairs):
            for conn, ttft, total in ((direct, d_ttft, d_total), (gateway, g_ttft, g_total)) if i % 2 == 0 else ((gateway, g_ttft, g_total), (direct, d_ttft, d_total)):
                a, b = timed(conn)
                ttft.append(a)
                total.append(b)
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"SmolLM2-135M Q4_1, streamed chat, max_tokens 8, temperature 0; {args.pairs} alternating pairs; {os.cpu_count()} cores")
    print()
    print("| | TTFT median | TTFT p99 | total median | total p99 |")
    print("|---|---:|---:|---:|---:|")
    print(f"| direct to llama-server | {statistics.median(d_ttft):.2f} ms | {pct(d_ttft, 99):.2f} ms | {statistics.median(d_total):.2f} ms | {pct(d_total, 99):.2f} ms |")
    print(f"| through the gateway | {statistics.median(g_ttft):.2f} ms | {pct(g_ttft, 99):.2f} ms | {statistics.median(g_total):.2f} ms | {pct(g_total, 99):.2f} ms |")
    dt = [g - d for g, d in zip(g_ttft, d_ttft)]
    dT = [g - d for g, d in zip(g_total, d_total)]
    print(f"| **added by the gateway** (per pair) | **{statistics.median(dt):.2f} ms** | {pct(dt, 99):.2f} ms | **{statistics.median(dT):.2f} ms** | {pct(dT, 99):.2f} ms |")


if __name__ == "__main__":
    main()
