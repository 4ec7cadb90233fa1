#!/usr/bin/env python3
"""Gateway overhead on a real request, side by side with llama-server's router mode and LiteLLM.

The same small request (SmolLM2, max_tokens 8, temperature 0, streamed) is sent in rotating order straight
to the runner's llama-server, through the gateway, through llama-server in router mode (`--models-dir`, the
same binary, the model already loaded) and through the LiteLLM proxy (PyPI `litellm[proxy]`, pinned, in
.venv-bench) pointed at the same llama-server, 200 rounds. Prints median and p99 of time to first token
(first SSE data event) and total time, and each one's added time over direct (goal for the gateway: median
under 0.5 ms). Then the swap A→B→A with one model slot and cold starts (ours vs the router), and idle RSS and
PSS of our five processes against the router and LiteLLM (runners excluded). Release builds. Figures, not
assertions.
Usage: python3 scripts/bench_gateway.py [--pairs 200] [--swaps 10] [--colds 8] [--write docs/benchmarks.md]
"""
import argparse, http.client, json, os, signal, statistics, subprocess, time

from benchlib import MODEL, ROOT, Mesh, children, direct_run, free_ports, pct, pss_kb, rpc, rss_kb, timed_stream, wait_http
BODY = json.dumps({"model": "smol", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8,
                   "temperature": 0, "stream": True}).encode()


def timed(conn):
    """One streamed request on a kept-alive connection: (time to first data event, total) in ms."""
    return timed_stream(conn, BODY)


NOTES = """
Reading the figures: each leg opens a new connection per request (llama-server closes the connection after
a streamed response, so this is how its own clients see it). Per-round differences of a millisecond or two
are within this shared 2-core machine's noise; a gateway median below direct is not a real speed-up. The
swap row includes stopping the other model and loading this one: compare it with `make bench-runners`,
which shows how much of it is llama-server's own spawn-to-ready. In the cold start, the ~100 ms beyond
spawn-to-ready is the prompt's first, uncached evaluation: the timed rounds above hit llama-server's prompt
cache (a request with `cache_prompt: false` takes the same ~95 ms on a warm server), so both tools pay it;
our own readiness overhead is in `make bench-runners` (about 0 ms since the log is tailed every 2 ms).

Memory: the services link only the Swift standard library, Concurrency, Synchronization, Glibc and
libdispatch: no Foundation or FoundationEssentials, no Dispatch overlay, no _StringProcessing (each cost
about 1 MB of every process's RSS; docs/ARCHITECTURE.md, "What each process links"). What is left is
mostly the Swift runtime and libc, shared by all five and counted in full by RSS in each; the PSS total is
what the five really cost together. Linking the Swift runtime statically (`--static-swift-stdlib`) was
tried with FoundationEssentials: RSS fell to 11.5-13.3 MB per service, but the PSS total rose from 25 to
46 MB (each process gets a private copy of the runtime) and each binary grew to 27 MB, so the shared,
dynamic build stays.

Gateway capacity (wrk against ours, nginx, llama-server's and the router's `/health`) is `make bench-http`;
256 streaming clients is `make bench-load`; speech to text is `make bench-audio`. """


LITELLM = "litellm[proxy]==1.108.7"
LITELLM_KEY = "sk-bench-0123456789abcdef0123"


def litellm_binary():
    """LiteLLM's proxy from PyPI, pinned, in its own virtualenv (.venv-bench; about a minute the first time)."""
    venv = os.path.join(ROOT, ".venv-bench")
    binary = os.path.join(venv, "bin", "litellm")
    if not os.path.exists(binary):
        print(f"installing {LITELLM} into .venv-bench…", flush=True)
        subprocess.run(["python3", "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check", LITELLM], check=True)
    return binary


def start_litellm(work, upstream_port):
    """LiteLLM proxy with one model, `smol`, pointed at the given llama-server (OpenAI-compatible)."""
    port = free_ports(1)[0]
    config = os.path.join(work, "litellm.yaml")
    with open(config, "w") as f:
        f.write(f"model_list:\n  - model_name: smol\n    litellm_params:\n      model: openai/smol\n"
                f"      api_base: http://127.0.0.1:{upstream_port}/v1\n      api_key: none\n")
    env = dict(os.environ, LITELLM_MASTER_KEY=LITELLM_KEY, LITELLM_LOG="ERROR")
    process = subprocess.Popen([litellm_binary(), "--config", config, "--host", "127.0.0.1", "--port", str(port)], cwd=work,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return process, port


def post(port, path, doc):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})
    return json.loads(conn.getresponse().read())


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    return json.loads(conn.getresponse().read())


def wait_until(predicate, seconds=60):
    deadline = time.time() + seconds
    while not predicate():
        if time.time() > deadline:
            raise SystemExit("timed out waiting for an unload")
        time.sleep(0.01)


class Fresh:
    """llama-server closes the connection after each streamed response: a new one per request."""

    def __init__(self, port, headers=None):
        self.port = port
        self.headers = headers or {}

    def request(self, method, url, body=None, headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.conn.request(method, url, body=body, headers={**(headers or {}), **self.headers})

    def getresponse(self):
        return self.conn.getresponse()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--swaps", type=int, default=10, help="A→B→A cycles with one model slot")
    ap.add_argument("--colds", type=int, default=12, help="cold starts each: llama-server alone, ours, the router")
    ap.add_argument("--write", help="also write the tables to this markdown file")
    args = ap.parse_args()
    mesh = Mesh("lr-bench-gw-", {"limits": {"max_loaded_models": 1}},
                {"models": {name: {"model_path": MODEL, "parameters": {"ctx_size": 1024, "parallel": 1}} for name in ("smol", "smol-b")}})
    work, lmstudio = mesh.work, mesh.lmstudio
    router_dir = os.path.join(work, "router-models")
    os.makedirs(router_dir)
    for name in ("smol", "smol-b"):
        os.symlink(MODEL, os.path.join(router_dir, name + ".gguf"))
    router_port = free_ports(1)[0]
    router = subprocess.Popen([os.path.join(ROOT, ".venv-llama", "bin", "llama-server"), "--models-dir", router_dir, "--models-max", "1",
                               "--host", "127.0.0.1", "--port", str(router_port), "-c", "1024", "-np", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    litellm = None
    try:
        gateway = http.client.HTTPConnection("127.0.0.1", lmstudio, timeout=60)
        timed(gateway)  # loads the model
        endpoint = rpc(mesh.runners_socket, "runners.list")[0]["endpoint"]
        runner_port = int(endpoint.rsplit(":", 1)[1])

        litellm, litellm_port = start_litellm(work, runner_port)
        # The router names the model after its file: smol.gguf → "smol", the same request body for all four.
        # A new connection per request on every leg, so none is favoured by keep-alive. LiteLLM relays to the
        # same llama-server the direct leg and the gateway use.
        legs = {"direct": Fresh(runner_port), "gateway": Fresh(lmstudio), "router": Fresh(router_port),
                "litellm": Fresh(litellm_port, {"Authorization": f"Bearer {LITELLM_KEY}"})}
        for _ in range(10):
            for conn in legs.values():
                timed(conn)  # the router loads its model on the first one
        results = {name: ([], []) for name in legs}
        names = list(legs)
        for i in range(args.pairs):
            for name in names[i % len(names):] + names[:i % len(names)]:
                a, b = timed(legs[name])
                results[name][0].append(a)
                results[name][1].append(b)
        time.sleep(3)  # idle
        ours = [(pid, comm) for pid, comm in children(mesh.launcher.pid) if "llama-server" not in comm]
        ours.append((mesh.launcher.pid, "launcher"))
        ours_rss = {comm: rss_kb(pid) for pid, comm in ours}
        ours_pss = {comm: pss_kb(pid) for pid, comm in ours}
        router_rss, router_pss = rss_kb(router.pid), pss_kb(router.pid)
        lite = [litellm.pid] + [pid for pid, _ in children(litellm.pid)]
        litellm_rss, litellm_pss = sum(rss_kb(p) for p in lite), sum(pss_kb(p) for p in lite)
        litellm.send_signal(signal.SIGTERM)
        litellm.wait(timeout=30)
        legs.pop("litellm")
        # Swap A→B→A with one model slot on both (ours: max_loaded_models 1; router: --models-max 1): time from
        # the request to the first data event, which includes stopping the other model and loading this one.
        global BODY
        plain = BODY
        swaps = {"gateway": [], "router": []}
        for _ in range(args.swaps):
            for name in ("gateway", "router"):
                for model in (b"smol-b", b"smol"):
                    BODY = plain.replace(b'"model": "smol"', b'"model": "' + model + b'"')
                    swaps[name].append(timed(legs[name])[0])
        BODY = plain
        # Cold start: the request that finds its model unloaded, to the first data event; beside it in the
        # same rotation, llama-server's own spawn-to-ready for the same model and arguments.
        colds = {"spawn": [], "gateway": [], "router": []}
        binary = os.path.join(ROOT, ".venv-llama", "bin", "llama-server")
        for _ in range(args.colds):
            colds["spawn"].append(direct_run(binary, ("--ctx-size", "1024", "--parallel", "1", "--alias", "smol")))
            rpc(mesh.runners_socket, "runners.unload", {"model": "smol"})
            wait_until(lambda: not [r for r in rpc(mesh.runners_socket, "runners.list")
                                    if r["state"] in ("loading", "ready", "stopping")])
            colds["gateway"].append(timed(legs["gateway"])[0])
            post(router_port, "/models/unload", {"model": "smol"})
            wait_until(lambda: all(m["status"]["value"] == "unloaded" for m in get(router_port, "/models")["data"]))
            colds["router"].append(timed(legs["router"])[0])
    finally:
        if litellm and litellm.poll() is None:
            litellm.send_signal(signal.SIGTERM)
            litellm.wait(timeout=30)
        router.send_signal(signal.SIGTERM)
        router.wait(timeout=30)
        mesh.stop()

    lines = [f"SmolLM2-135M Q4_1, streamed chat, max_tokens 8, temperature 0; {args.pairs} rounds in rotating order; "
             f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}", "",
             "| | TTFT median | TTFT p99 | total median | total p99 | added TTFT (median of per-round differences) | added total |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    d_ttft, d_total = results["direct"]
    labels = {"direct": "direct to llama-server", "gateway": "**Llama Runner gateway**", "router": "llama-server router mode",
              "litellm": f"LiteLLM proxy ({LITELLM.split('==')[1]})"}
    for name in names:
        ttft, total = results[name]
        added = "—" if name == "direct" else \
            f"{statistics.median([x - y for x, y in zip(ttft, d_ttft)]):.2f} ms | {statistics.median([x - y for x, y in zip(total, d_total)]):.2f} ms"
        if name == "direct":
            added += " | —"
        lines.append(f"| {labels[name]} | {statistics.median(ttft):.2f} ms | {pct(ttft, 99):.2f} ms | "
                     f"{statistics.median(total):.2f} ms | {pct(total, 99):.2f} ms | {added} |")
    lines += ["", f"Swap with one model slot ({args.swaps} A→B→A cycles, request to first data event, including the "
              "other model's stop and this one's load):", "",
              "| | median | p90 | max |", "|---|---:|---:|---:|"]
    for name in ("gateway", "router"):
        v = swaps[name]
        lines.append(f"| {labels[name]} (max 1 model) | {statistics.median(v):.0f} ms | {pct(v, 90):.0f} ms | {max(v):.0f} ms |")
    spawn = statistics.median(colds["spawn"])
    lines += ["", f"Cold start ({args.colds} each, rotating): request for an unloaded model to its first data event, and "
              "the same minus llama-server's own spawn-to-ready (same binary, model and arguments, spawned by the script, "
              "/health polled every 2 ms):", "",
              "| | median | p90 | minus spawn-to-ready (median) |", "|---|---:|---:|---:|",
              f"| llama-server spawn-to-ready alone | {spawn:.0f} ms | {pct(colds['spawn'], 90):.0f} ms | — |"]
    for name in ("gateway", "router"):
        v = colds[name]
        lines.append(f"| {labels[name]} | {statistics.median(v):.0f} ms | {pct(v, 90):.0f} ms | {statistics.median(v) - spawn:+.0f} ms |")
    lines += ["", "Idle memory with the model loaded (runners excluded). RSS counts the shared Swift runtime and libc in "
              "full in every process; PSS divides shared pages among the processes mapping them, so the PSS total is what "
              "the five cost together:", "",
              "| process | RSS | PSS |", "|---|---:|---:|"]
    for comm, kb in sorted(ours_rss.items()):
        lines.append(f"| {comm} | {kb / 1024:.1f} MB | {ours_pss[comm] / 1024:.1f} MB |")
    lines.append(f"| **Llama Runner, all five** | **{sum(ours_rss.values()) / 1024:.1f} MB** (sum) | **{sum(ours_pss.values()) / 1024:.1f} MB** |")
    lines.append(f"| llama-server router process | {router_rss / 1024:.1f} MB | {router_pss / 1024:.1f} MB |")
    lines.append(f"| LiteLLM proxy (its processes) | {litellm_rss / 1024:.1f} MB | {litellm_pss / 1024:.1f} MB |")
    print()
    print("\n".join(lines))
    if args.write:
        with open(args.write, "w") as f:
            f.write("# Benchmarks\n\nWritten by `make bench-gateway` (scripts/bench_gateway.py); release builds, same machine, "
                    "same run, same llama-server binary.\n\n" + "\n".join(lines) + "\n" + NOTES)


if __name__ == "__main__":
    main()
