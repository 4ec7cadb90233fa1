#!/usr/bin/env python3
"""Gateway throughput benchmark.

Runs the whole mesh (`launcher up`, release build) on free loopback ports and, in the same run, nginx
with one worker answering the same constant body, then drives both with wrk (keep-alive) on
GET /api/version at 1, 16 and 64 connections, in `--rounds` alternating rounds (nginx, gateway,
llama-server, router, then again), so a slow spell of the shared machine hits every server alike.
Prints the median round's requests/s and p50/p99 latency for each and the ratio to nginx. Beside them, `GET /health` on llama-server (serving the demo model) and on llama-server
in router mode (`--models-dir`), the same binary. Figures, not assertions: the machine is shared and noisy.

Usage: python3 scripts/bench_http.py [--duration 5] [--rounds 3] [--connections 1,16,64]
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

from benchlib import Report, ROOT, free_ports, wait_http
BODY = '{"version":"0.12.6"}'


def ensure_tools():
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not shutil.which(tool) and not os.path.exists("/usr/sbin/" + tool)]
    if missing:
        print(f"installing {' '.join(missing)} (Debian packages)…", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, check=True)


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(url, connections, duration):
    threads = 1 if connections == 1 else 2
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        p50 = to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
        p99 = to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    except (AttributeError, ValueError):
        raise SystemExit(f"could not read wrk's output for {url}:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99,
            "errors": (int(errors.group(1)) if errors else 0), "socket_errors": socket_errors.group(1) if socket_errors else ""}


def median_run(runs):
    """The run with the median requests/s (its latencies come with it)."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", default="1,16,64")
    ap.add_argument("--markdown", help="also write the report to this file")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]

    ensure_tools()
    print("building release executables…", flush=True)
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()

    work = tempfile.mkdtemp(prefix="lr-bench-")
    ollama, lmstudio, api, web, nginx_port, direct_port, router_port = free_ports(7)
    binary = os.path.join(ROOT, ".venv-llama", "bin", "llama-server")
    model = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    peers = os.path.exists(binary) and os.path.exists(model)  # installed by scripts/bootstrap.sh
    os.makedirs(f"{work}/config")
    with open(f"{work}/config/app_config.json", "w") as f:
        json.dump({"proxies": {"ollama": {"port": ollama}, "lmstudio": {"port": lmstudio}},
                   "dashboard": {"api_port": api, "web_port": web}}, f)
    with open(f"{work}/nginx.conf", "w") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{ default_type application/json; return 200 '{BODY}'; }}
    }}
}}
""")
    launcher = subprocess.Popen([f"{bindir}/launcher", "up", "--state-dir", f"{work}/state", "--config-dir", f"{work}/config"],
                                stdout=subprocess.DEVNULL, stderr=open(f"{work}/launcher.err", "w"))
    nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", f"{work}/nginx.conf", "-p", work],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    llama = []
    if peers:
        os.makedirs(f"{work}/router-models")
        os.symlink(model, f"{work}/router-models/smol.gguf")
        llama = [subprocess.Popen([binary, "-m", model, "--host", "127.0.0.1", "--port", str(direct_port), "-c", "1024", "-np", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                 subprocess.Popen([binary, "--models-dir", f"{work}/router-models", "--host", "127.0.0.1", "--port", str(router_port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    results = []
    try:
        ours = f"http://127.0.0.1:{ollama}/api/version"
        ref = f"http://127.0.0.1:{nginx_port}/api/version"
        wait_http(ours)
        wait_http(ref)
        with urllib.request.urlopen(ours) as r:
            assert r.read().decode() == BODY, "gateway body differs from the nginx body"
        others = [f"http://127.0.0.1:{direct_port}/health", f"http://127.0.0.1:{router_port}/health"] if peers else []
        for url in others:
            wait_http(url, timeout=120)
        for c in conns:
            run_wrk(ours, c, 2)  # warm-up
            run_wrk(ref, c, 2)
            rounds = []
            for _ in range(args.rounds):
                n = run_wrk(ref, c, args.duration)
                g = run_wrk(ours, c, args.duration)
                rounds.append((g, n, [run_wrk(url, c, args.duration) for url in others]))
            g = median_run([r[0] for r in rounds])
            n = median_run([r[1] for r in rounds])
            peer = [median_run([r[2][i] for r in rounds]) for i in range(len(others))]
            results.append((c, g, n, peer))
            print(f"  {c:>3} connections: gateway {g['rps']:,.0f} req/s, nginx {n['rps']:,.0f} req/s"
                  + "".join(f", {name} {p['rps']:,.0f} req/s" for name, p in zip(("llama-server", "router"), peer)), flush=True)
        gateway_pid = None
        try:
            status = subprocess.run([f"{bindir}/launcher", "status", "--state-dir", f"{work}/state"], capture_output=True, text=True).stdout
            gateway_pid = int(re.search(r"^gateway\s+(\d+)", status, re.M).group(1))
            rss_kb = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{gateway_pid}/status").read()).group(1))
        except Exception:
            rss_kb = None
    finally:
        launcher.send_signal(signal.SIGINT)
        nginx.send_signal(signal.SIGQUIT)
        for p in llama:
            p.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
        nginx.wait(timeout=30)
        for p in llama:
            p.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    report = Report()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    report()
    report(f"GET /api/version, keep-alive, wrk {args.duration} s per run, median of {args.rounds} alternating rounds, {os.cpu_count()} cores ({cpu}), wrk on the same cores")
    report()
    report("| connections | gateway req/s | gateway p50 | gateway p99 | nginx req/s | nginx p50 | nginx p99 | gateway / nginx |")
    report("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, g, n, _ in results:
        report(f"| {c} | {g['rps']:,.0f} | {g['p50_ms']:.3f} ms | {g['p99_ms']:.3f} ms | {n['rps']:,.0f} | {n['p50_ms']:.3f} ms | {n['p99_ms']:.3f} ms | {g['rps'] / n['rps']:.2f}× |")
    if peers:
        report()
        report("| connections | gateway `/api/version` req/s | llama-server `/health` req/s | p99 | gateway / llama-server | router `/health` req/s | p99 | gateway / router |")
        report("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c, g, _, (d, r) in results:
            report(f"| {c} | {g['rps']:,.0f} | {d['rps']:,.0f} | {d['p99_ms']:.3f} ms | {g['rps'] / d['rps']:.2f}× | {r['rps']:,.0f} | {r['p99_ms']:.3f} ms | {g['rps'] / r['rps']:.2f}× |")
    else:
        report("\n(llama-server or the demo model is not installed: run scripts/bootstrap.sh for the llama-server columns)")
    for c, g, n, _ in results:
        if g["errors"] or g["socket_errors"]:
            report(f"gateway at {c} connections: {g['errors']} non-2xx, socket errors: {g['socket_errors']}")
    if rss_kb:
        report(f"\ngateway RSS after the runs: {rss_kb / 1024:.1f} MiB")

    report.write(args.markdown)

if __name__ == "__main__":
    main()
