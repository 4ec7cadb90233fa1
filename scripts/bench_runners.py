#!/usr/bin/env python3
"""Runner readiness overhead and swap time.

In the same run, 20 times each, alternating:
  direct  llama-server spawned by this script, /health polled every 2 ms: its own spawn-to-ready time;
  ours    runners.acquire on a cold model through runner-manager: acquire-to-ready.
Prints both medians and the median difference (our readiness overhead; goal under 30 ms). Then a swap
cycle A -> B -> A with max_loaded_models 1 (each step evicts the other model and loads its own).
Release builds; the real llama-server and SmolLM2. Figures, not assertions.
Usage: python3 scripts/bench_runners.py [--runs 20] [--cycles 5]
"""
import argparse, http.client, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

from benchlib import MODEL, ROOT, direct_run, free_ports, healthy, rpc


def wait_stopped(sock, model):
    for _ in range(3000):
        info = [r for r in rpc(sock, "runners.list") if r["model"] == model]
        if not info or info[0]["state"] in ("stopped", "failed"):
            return
        time.sleep(0.01)
    raise SystemExit(f"{model} did not stop")


def ours_run(sock, model):
    start = time.perf_counter()
    grant = rpc(sock, "runners.acquire", {"model": model})
    elapsed = (time.perf_counter() - start) * 1000
    rpc(sock, "runners.release", {"lease": grant["lease"]})
    rpc(sock, "runners.unload", {"model": model})
    wait_stopped(sock, model)
    return elapsed, grant["loadDurationMs"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=5)
    args = ap.parse_args()

    binary = subprocess.run([os.path.join(ROOT, "scripts", "install_llama_server.sh")], check=True,
                            capture_output=True, text=True).stdout.strip().splitlines()[-1]
    if not os.path.exists(MODEL):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "fetch_demo_model.py")], check=True)
    print("building release executables…", flush=True)
    subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    bindir = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()

    work = tempfile.mkdtemp(prefix="lr-bench-runners-")
    config, state = os.path.join(work, "config"), os.path.join(work, "state")
    os.makedirs(config)
    json.dump({"paths": {"models_dirs": []}, "discovery_interval_seconds": 0,
               "limits": {"max_loaded_models": 1, "default_ttl_seconds": 300}}, open(os.path.join(config, "app_config.json"), "w"))
    json.dump({"models": {"bench-a": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
                          "bench-b": {"model_path": MODEL, "parameters": {"ctx_size": 1024}}}},
              open(os.path.join(config, "models_config.json"), "w"))
    env = dict(os.environ, LLAMA_RUNNER_LLAMA_SERVER=binary)
    flags = ["--state-dir", state, "--config-dir", config]
    registry = subprocess.Popen([os.path.join(bindir, "model-registry")] + flags, env=env, stderr=subprocess.DEVNULL)
    manager = subprocess.Popen([os.path.join(bindir, "runner-manager")] + flags, env=env, stderr=subprocess.DEVNULL)
    sock = os.path.join(state, "run", "runners.sock")
    try:
        for _ in range(600):
            if os.path.exists(sock):
                try:
                    rpc(sock, "health")
                    break
                except OSError:
                    pass
            time.sleep(0.05)
        direct_run(binary)  # warm the page cache
        ours_run(sock, "bench-a")
        direct, ours, reported = [], [], []
        for i in range(args.runs):
            direct.append(direct_run(binary))
            o, r = ours_run(sock, "bench-a")
            ours.append(o)
            reported.append(r)
        swaps = {"A→B": [], "B→A": []}
        first = rpc(sock, "runners.acquire", {"model": "bench-a"})
        rpc(sock, "runners.release", {"lease": first["lease"]})
        for _ in range(args.cycles):
            for label, model in (("A→B", "bench-b"), ("B→A", "bench-a")):
                start = time.perf_counter()
                g = rpc(sock, "runners.acquire", {"model": model})
                swaps[label].append((time.perf_counter() - start) * 1000)
                rpc(sock, "runners.release", {"lease": g["lease"]})
    finally:
        manager.send_signal(signal.SIGTERM)
        manager.wait(timeout=60)
        registry.send_signal(signal.SIGTERM)
        registry.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    md, mo = statistics.median(direct), statistics.median(ours)
    diffs = [o - d for o, d in zip(ours, direct)]
    print()
    print(f"SmolLM2-135M Q4_1, ctx 512, {args.runs} cold starts each, alternating; {os.cpu_count()} cores")
    print()
    print("| | median | min | max |")
    print("|---|---:|---:|---:|")
    print(f"| llama-server spawn-to-ready (direct, 2 ms polling) | {md:.1f} ms | {min(direct):.1f} ms | {max(direct):.1f} ms |")
    print(f"| runners.acquire to ready (through runner-manager) | {mo:.1f} ms | {min(ours):.1f} ms | {max(ours):.1f} ms |")
    print(f"| loadDurationMs reported by runner-manager | {statistics.median(reported):.0f} ms | {min(reported)} ms | {max(reported)} ms |")
    print(f"| **readiness overhead** (ours − direct, per pair) | **{statistics.median(diffs):.1f} ms** | {min(diffs):.1f} ms | {max(diffs):.1f} ms |")
    print()
    print(f"Swap with max_loaded_models 1 ({args.cycles} cycles): A→B median {statistics.median(swaps['A→B']):.0f} ms, "
          f"B→A median {statistics.median(swaps['B→A']):.0f} ms (each evicts the other model, then loads)")


if __name__ == "__main__":
    main()
