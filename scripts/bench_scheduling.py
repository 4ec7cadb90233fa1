#!/usr/bin/env python3
"""Scheduling benchmark: mixed traffic for two models on one slot, and an abandoned load.

Two model entries over the demo GGUF (different ids and context sizes, so two runners),
`max_loaded_models: 1`, in one run:
1. Mixed traffic: 4 clients asking model A and 4 asking model B back to back (max_tokens 16) for
   `--duration` seconds, against ours with `swap_policy: batch`, ours with `fifo`, and llama-server's
   router with `--models-max 1` (the same binary). Prints completed requests, errors, swaps and p50/p99
   latency for each, and batch's ratio to the router.
2. Follow-up after a swap: a conversation of about 1,000 prompt tokens on A, one request to B (A is
   evicted), then the next turn on A: its time to first token with the slot cache (A's conversation
   saved at eviction and restored at load), without it (`slot_cache_bytes: 0`), and straight to a warm
   llama-server that never unloaded (the floor).
3. Abandoned load: a request for A (a large context: a slow load) whose client leaves 20 ms after it was
   queued for a cold load while B waits: B's time to first token with `stop_abandoned_loads` on and off.
Release builds, the real llama-server. Figures, not assertions.
Usage: python3 scripts/bench_scheduling.py [--duration 60] [--rounds 3] [--parts mixed,follow-up,abandoned]
"""
import argparse, concurrent.futures, json, os, re, shutil, socket, statistics, subprocess, tempfile, threading, time
import urllib.error, urllib.request

from benchlib import MODEL, Mesh, Report, free_ports, pct, wait_http

BINARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv-llama", "bin", "llama-server")
MODELS = {"A": {"ctx_size": 1024}, "B": {"ctx_size": 768}}


def post(url, model, max_tokens=16, stream=False, timeout=300):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Count to twenty."}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": stream}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=timeout)


def mixed(url, names, duration):
    """4 clients per model, back to back; returns (latencies, errors, completed per model, unfinished)."""
    stop = time.time() + duration
    latencies, errors, lock = [], [], threading.Lock()
    per_model = {name: 0 for name in names}
    waits = []  # latency less the runner's own prompt and generation time (its `timings`)

    def client(model):
        while time.time() < stop:
            t = time.perf_counter()
            try:
                with post(url, model) as r:
                    answer = json.loads(r.read())
                elapsed = time.perf_counter() - t
                timings = answer.get("timings") or {}
                with lock:
                    latencies.append(elapsed)
                    waits.append(elapsed - (timings.get("prompt_ms", 0) + timings.get("predicted_ms", 0)) / 1000)
                    per_model[model] += 1
            except Exception as e:  # an error is a figure here
                with lock:
                    errors.append(str(e)[:120])
    threads = [threading.Thread(target=client, args=(names[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, per_model, waits


def ours(policy, extra=None, models=None):
    app = {"limits": {"max_loaded_models": 1, "swap_policy": policy, **(extra or {})}}
    return Mesh("lr-bench-sched-", app, {"models": models or {
        name: {"model_path": MODEL, "parameters": params} for name, params in MODELS.items()}})


def swaps_in(path, pattern):
    try:
        return len(re.findall(pattern, open(path, errors="replace").read()))
    except OSError:
        return 0


WORDS = ("the river carried old boats past quiet towns where bakers opened early and children counted clouds "
         "while a lighthouse keeper wrote letters about storms tides gulls and distant ships").split()
SYSTEM = " ".join(WORDS[i % len(WORDS)] for i in range(920))  # about 1,000 tokens with the chat template


def ttft(url, model, messages):
    """Time to the first streamed content token, and the whole answer's text."""
    body = json.dumps({"model": model, "messages": messages, "max_tokens": 8, "temperature": 0, "stream": True}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    start, first, text = time.perf_counter(), None, ""
    with urllib.request.urlopen(req, timeout=300) as r:
        for line in r:
            if not line.startswith(b"data: {"):
                continue
            delta = json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            if delta and first is None:
                first = time.perf_counter() - start
            text += delta
    return first if first is not None else time.perf_counter() - start, text


def conversation(url, model, switch=None):
    """The first turn, an optional request to another model, then the follow-up's time to first token."""
    turn = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What did the keeper write about?"}]
    _, answer = ttft(url, model, turn)
    if switch:
        ttft(url, switch, [{"role": "user", "content": "hi"}])
    return ttft(url, model, turn + [{"role": "assistant", "content": answer}, {"role": "user", "content": "And the boats?"}])[0]


def follow_up(slot_cache_bytes):
    m = ours("batch", {"slot_cache_bytes": slot_cache_bytes}, {
        "A": {"model_path": MODEL, "parameters": {"ctx_size": 4096}},
        "B": {"model_path": MODEL, "parameters": {"ctx_size": 512}}})
    try:
        return conversation(m.url(m.lmstudio), "A", switch="B")
    finally:
        m.stop()


def follow_up_direct():
    (port,) = free_ports(1)
    p = subprocess.Popen([BINARY, "-m", MODEL, "-c", "4096", "--host", "127.0.0.1", "--port", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=60, process=p)
        return conversation(f"http://127.0.0.1:{port}", "A")
    finally:
        p.terminate()
        p.wait(timeout=30)


def abandoned_ttft(stop_abandoned):
    m = ours("batch", {"stop_abandoned_loads": stop_abandoned}, {
        "A": {"model_path": MODEL, "parameters": {"ctx_size": 32768, "parallel": 8}},
        "B": {"model_path": MODEL, "parameters": {"ctx_size": 512}}})
    try:
        url = m.url(m.lmstudio)
        s = socket.create_connection(("127.0.0.1", m.lmstudio))
        body = b'{"model":"A","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            def b_ttft():
                t = time.perf_counter()
                with post(url, "B", max_tokens=4, stream=True) as r:
                    r.readline()
                    return time.perf_counter() - t
            time.sleep(0.005)
            waiting = pool.submit(b_ttft)
            time.sleep(0.02)
            s.close()
            return waiting.result(timeout=300)
    finally:
        m.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3, help="abandoned-load repetitions per setting")
    ap.add_argument("--parts", default="mixed,follow-up,abandoned")
    ap.add_argument("--markdown")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    report = Report()
    if "mixed" in parts:
        mixed_part(args, report)
    if "follow-up" in parts:
        runs = {"restored": [], "not kept": [], "direct": []}
        for _ in range(args.rounds):
            runs["restored"].append(follow_up(2 << 30))
            runs["not kept"].append(follow_up(0))
            runs["direct"].append(follow_up_direct())
        med = {k: statistics.median(v) for k, v in runs.items()}
        report()
        report(f"Follow-up after a swap: a ~1,000-token conversation on A, one request to B (A evicted), the next turn on A; "
               f"time to first token, median of {args.rounds}")
        report()
        report("| A's conversation | follow-up time to first token | runs | / not kept |")
        report("|---|---:|---|---:|")
        for name, label in (("restored", "saved at eviction, restored at load (default)"), ("not kept", "not kept (`slot_cache_bytes: 0`)"),
                            ("direct", "llama-server that never unloaded (floor)")):
            report(f"| {label} | {med[name] * 1000:,.0f} ms | {', '.join(f'{x * 1000:.0f}' for x in runs[name])} | {med[name] / med['not kept']:.2f}× |")
    if "abandoned" in parts:
        abandoned_part(args, report)
    report.write(args.markdown)


def mixed_part(args, report):
    rows = []
    for policy in ("batch", "fifo"):
        m = ours(policy)
        try:
            lat, errs, per, waits = mixed(m.url(m.lmstudio), ["A", "B"], args.duration)
            starts = swaps_in(os.path.join(m.state, "logs", "runner-manager.log"), r"starting runner")
        finally:
            m.stop()
        rows.append((f"ours, {policy}", lat, errs, max(0, starts - 1), per, waits))
        print(f"ours {policy}: {len(lat)} requests, {len(errs)} errors, {max(0, starts - 1)} swaps", flush=True)
    work = tempfile.mkdtemp(prefix="lr-bench-router-")
    try:
        os.makedirs(f"{work}/models")
        for name in MODELS:
            os.symlink(MODEL, f"{work}/models/{name}.gguf")
        (port,) = free_ports(1)
        log = open(f"{work}/router.log", "w")
        router = subprocess.Popen([BINARY, "--models-dir", f"{work}/models", "--models-max", "1", "--host", "127.0.0.1",
                                   "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/health", timeout=60, process=router)
            lat, errs, per, waits = mixed(f"http://127.0.0.1:{port}", list(MODELS), args.duration)
        finally:
            router.terminate()
            router.wait(timeout=30)
        loads = swaps_in(f"{work}/router.log", r"spawning server instance with name=")
        rows.append(("llama-server router, --models-max 1", lat, errs, max(0, loads - 1), per, waits))
        print(f"router: {len(lat)} requests, {len(errs)} errors, {max(0, loads - 1)} swaps", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report()
    report(f"Mixed traffic: 4 clients on A and 4 on B back to back, max_tokens 16, {args.duration} s, max_loaded_models 1 "
           f"(max_wait_seconds 10 for batch)")
    report()
    report("| server | completed | A / B | errors | swaps | p50 | p99 | max | p99 wait | completed / router |")
    report("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    router_done = max(1, len(rows[-1][1]))
    for name, lat, errs, swaps, per, waits in rows:
        p50 = pct(lat, 50) if lat else float("nan")
        p99 = pct(lat, 99) if lat else float("nan")
        worst = max(lat) if lat else float("nan")
        wait99 = pct(waits, 99) if waits else float("nan")
        report(f"| {name} | {len(lat)} | {per['A']} / {per['B']} | {len(errs)} | {swaps} | {p50 * 1000:,.0f} ms | {p99 * 1000:,.0f} ms "
               f"| {worst * 1000:,.0f} ms | {wait99 * 1000:,.0f} ms | {len(lat) / router_done:.2f}× |")
    report("(p99 wait: latency less the runner's own prompt and generation time from its `timings`: the time spent queued, "
           "swapping and relaying)")
    for name, _, errs, _, _, _ in rows:
        if errs:
            report(f"{name}: first error: {errs[0]}")



def abandoned_part(args, report):
    on = [abandoned_ttft(True) for _ in range(args.rounds)]
    off = [abandoned_ttft(False) for _ in range(args.rounds)]
    report()
    report(f"Abandoned load: A (ctx 32768, a slow load) queued cold, its client gone after 20 ms while B waits; "
           f"B's time to first token, median of {args.rounds}")
    report()
    report("| stop_abandoned_loads | B time to first token | runs |")
    report("|---|---:|---|")
    report(f"| true (default) | {statistics.median(on) * 1000:,.0f} ms | {', '.join(f'{x * 1000:.0f}' for x in on)} |")
    report(f"| false | {statistics.median(off) * 1000:,.0f} ms | {', '.join(f'{x * 1000:.0f}' for x in off)} |")


if __name__ == "__main__":
    main()
