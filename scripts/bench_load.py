#!/usr/bin/env python3
"""Load through the gateway: N concurrent streaming clients for S seconds.

Each client sends the same streamed chat request (SmolLM2, max_tokens 16, temperature 0) over and over,
first straight to the runner's llama-server, then through the gateway, for the same time each. Prints
requests completed, errors (goal 0), median and p99 of the gap between consecutive chunks, and the
gateway's RSS before and after. The bench config raises `limits.queue_size` to the client count (the
default, 64 waiting requests per model, would turn the rest away with 503 by design).
Usage: python3 scripts/bench_load.py [--clients 256] [--seconds 60] [--parallel 4]
"""
import argparse, http.client, json, os, statistics, threading, time

from benchlib import Mesh, Report, MODEL, pct, rpc, rss_kb

BODY = json.dumps({"model": "smol", "messages": [{"role": "user", "content": "Count to ten"}], "max_tokens": 16,
                   "temperature": 0, "stream": True}).encode()


def phase(port, clients, seconds):
    """Runs `clients` threads against 127.0.0.1:port for `seconds`; returns (completed, errors, gaps ms)."""
    stop_at = time.perf_counter() + seconds
    lock = threading.Lock()
    totals = {"done": 0, "errors": 0, "examples": []}
    gaps = []

    def client():
        mine = []
        while time.perf_counter() < stop_at:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
                conn.request("POST", "/v1/chat/completions", body=BODY, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
                last, done = None, False
                while True:
                    line = r.readline()
                    if not line:
                        break
                    if line.startswith(b"data:"):
                        now = time.perf_counter()
                        if last is not None:
                            mine.append((now - last) * 1000)
                        last = now
                        if line.startswith(b"data: [DONE]"):
                            done = True
                            break
                        if b'"error"' in line:
                            raise RuntimeError(line[:200].decode(errors="replace"))
                conn.close()
                if not done:
                    raise RuntimeError("stream ended without [DONE]")
                with lock:
                    totals["done"] += 1
            except Exception as e:  # counted, not raised: the figure is the error count
                with lock:
                    totals["errors"] += 1
                    if len(totals["examples"]) < 3:
                        totals["examples"].append(str(e))
        with lock:
            gaps.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return totals, gaps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=256)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--parallel", type=int, default=4, help="llama-server slots")
    ap.add_argument("--markdown", help="also write the report to this file")
    args = ap.parse_args()
    mesh = Mesh("lr-bench-load-", {"limits": {"queue_size": args.clients * 2}},
                {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 512 * args.parallel, "parallel": args.parallel}}}})
    lmstudio = mesh.lmstudio
    try:
        phase(lmstudio, 1, 0.01)  # loads the model
        endpoint = rpc(mesh.runners_socket, "runners.list")[0]["endpoint"]
        runner_port = int(endpoint.rsplit(":", 1)[1])
        gateway_pid = mesh.pid("gateway")
        rss_before = rss_kb(gateway_pid)
        print(f"{args.clients} clients × {args.seconds} s direct…", flush=True)
        direct, d_gaps = phase(runner_port, args.clients, args.seconds)
        print(f"{args.clients} clients × {args.seconds} s through the gateway…", flush=True)
        gateway, g_gaps = phase(lmstudio, args.clients, args.seconds)
        time.sleep(2)
        rss_after = rss_kb(gateway_pid)
        time.sleep(10)  # the services hand freed heap back every 10 s (Shared/Lifecycle/MemoryTrim.swift)
        rss_idle = rss_kb(gateway_pid)
    finally:
        mesh.stop()

    report = Report()
    report()
    report(f"{args.clients} concurrent streaming clients, {args.seconds} s each phase, SmolLM2-135M Q4_1 with {args.parallel} slots, "
          f"max_tokens 16; {os.cpu_count()} cores")
    report()
    report("| | completed | errors | chunk gap median | chunk gap p99 |")
    report("|---|---:|---:|---:|---:|")
    for name, t, g in (("direct to llama-server", direct, d_gaps), ("through the gateway", gateway, g_gaps)):
        report(f"| {name} | {t['done']} | {t['errors']} | {statistics.median(g):.2f} ms | {pct(g, 99):.2f} ms |")
    report()
    report(f"gateway RSS: {rss_before / 1024:.1f} MB before, {rss_after / 1024:.1f} MB 2 s after, {rss_idle / 1024:.1f} MB 12 s after")
    for name, t in (("direct", direct), ("gateway", gateway)):
        for e in t["examples"]:
            report(f"{name} error: {e}")

    report.write(args.markdown)

if __name__ == "__main__":
    main()
