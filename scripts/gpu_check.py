"""Issue 20's checks on real NVIDIA hardware (scripts/gpu_check.sh runs this; not in .ci/run, which has no GPU).

1. The inventory against nvidia-smi: every GPU listed by UUID with its PCI address and total memory, free
   memory within the sampling drift.
2. Two models placed and measured: each runner sees the GPU it was placed on (CUDA_VISIBLE_DEVICES in its
   environment), llama-server's own buffer sizes are read per device (CUDA0 and CPU), and nvidia-smi's
   per-process figure holds those buffers plus the CUDA context (documented tolerance below); Ollama's /api/ps
   reports them as size_vram.
3. An over-size load walking the ladder: a context whose KV cache alone is 1.25 times the largest GPU, all
   layers forced on the GPU, so the real CUDA allocation fails; the ladder evicts the two idle models, then
   offloads fewer layers or shrinks the context (down to min_ctx_size), each step shown in a waiting Ollama
   client's stream; it ends loaded or with the precise error.

Usage: python3 scripts/gpu_check.py LLAMA_SERVER (a CUDA build). Prints what it measured; exit 1 if a check failed."""
import json, os, subprocess, sys, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import MODEL, Mesh, rpc  # noqa: E402

# What nvidia-smi shows per process beyond llama-server's own buffers: the CUDA context and cuBLAS workspace
# (typically 300-600 MiB on recent drivers), so a process may hold up to this much more than its buffers.
CONTEXT_SLACK = 1 << 30
# Free memory moves between two samples (other processes, our own loads): allowed difference.
FREE_DRIFT = 512 << 20
# The demo model's KV cache per token at f16: 30 layers x 2 (K, V) x 3 KV heads x 64 x 2 bytes.
KV_PER_TOKEN = 30 * 2 * 3 * 64 * 2

failures = []


def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def smi(query, kind="--query-gpu"):
    out = subprocess.run(["nvidia-smi", f"{kind}={query}", "--format=csv,noheader,nounits"], check=True,
                         capture_output=True, text=True).stdout
    return [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]


def same_pci(a, b):
    """PCI addresses with any domain width (nvidia-smi writes 00000000:01:00.0, sysfs 0000:01:00.0)."""
    (da, ra), (db, rb) = a.split(":", 1), b.split(":", 1)
    return int(da, 16) == int(db, 16) and ra.lower() == rb.lower()


def runner_of(m, model):
    return next(r for r in rpc(m.runners_socket, "runners.list") if r["model"] == model)


def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.split("Usage: ")[1])
    server = os.path.abspath(sys.argv[1])
    gpus = smi("uuid,pci.bus_id,name,memory.total,memory.free")
    print(f"nvidia-smi: {len(gpus)} GPU(s): " + "; ".join(f"{g[2]} {g[0]} {g[3]} MiB" for g in gpus))
    largest = max(int(g[3]) for g in gpus) << 20
    huge_ctx = -(-int(largest * 1.25) // KV_PER_TOKEN // 256) * 256
    models = {"models": {
        "a": {"model_path": MODEL, "parameters": {"ctx_size": 8192}},
        "b": {"model_path": MODEL, "parameters": {"ctx_size": 8192, "parallel": 2}},
        "huge": {"model_path": MODEL, "parameters": {"ctx_size": huge_ctx, "n_gpu_layers": 99, "parallel": 1},
                 "min_ctx_size": 4096, "allow_cpu_fallback": True},
    }}
    m = Mesh("lr-gpu-check-", {"runtimes": {"llama-server": {"kind": "llama-server", "path": server}},
                               "limits": {"max_loaded_models": 3},
                               "proxies": {"ollama": {"stream_loading_progress": True}}}, models)
    try:
        print("1. inventory")
        time.sleep(2.5)  # one more sample after the start
        hardware = rpc(m.runners_socket, "runners.hardware")
        listed = {d["id"]: d for d in hardware["devices"]}
        check(hardware["problems"] == [], f"no inventory problems: {hardware['problems']}")
        for uuid, pci, name, total, free in smi("uuid,pci.bus_id,name,memory.total,memory.free"):
            d = listed.get(uuid)
            check(d is not None, f"{uuid} ({name}) listed")
            if d is None:
                continue
            print(f"        {uuid}: source {d.get('source')}, total {d['totalBytes'] >> 20} MiB, free {d['freeBytes'] >> 20} MiB, "
                  f"utilisation {d.get('utilizationPercent')} %, {d.get('temperatureCelsius')} C, {d.get('powerWatts')} W")
            check(d["kind"] == "nvidia" and same_pci(d["pciBusId"], pci), f"{uuid} is NVIDIA at {pci}")
            check(abs(d["totalBytes"] - (int(total) << 20)) <= 1 << 20, f"{uuid} total {d['totalBytes'] >> 20} MiB = nvidia-smi's {total} MiB")
            check(abs(d["freeBytes"] - (int(free) << 20)) <= FREE_DRIFT, f"{uuid} free {d['freeBytes'] >> 20} MiB ~ nvidia-smi's {free} MiB")
        check("cpu" in listed, "the CPU is a device of its own")

        print("2. two models placed and measured")
        uuids = {g[0] for g in gpus}
        for model in ("a", "b"):
            rpc(m.runners_socket, "runners.load", {"model": model})
            r = runner_of(m, model)
            measured = r.get("measuredMemory") or {"devices": {}}
            on = r.get("devices") or []
            check(len(on) == 1 and on[0] in uuids, f"{model} placed on a GPU: {on}")
            env = environ_of(r["pid"])
            check(env.get("CUDA_VISIBLE_DEVICES") == (on[0] if on else None) and env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID",
                  f"{model} sees only it: CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES')}")
            gpu_buffers = measured["devices"].get("CUDA0", 0)
            check(gpu_buffers > 0, f"{model}: llama-server's buffers by device {measured['devices']}")
            apps = {int(p): int(mib) << 20 for p, mib in smi("pid,used_memory", "--query-compute-apps")}
            held = apps.get(r["pid"])
            check(held is not None and gpu_buffers <= held <= gpu_buffers + CONTEXT_SLACK,
                  f"{model}: nvidia-smi shows pid {r['pid']} holding {None if held is None else held >> 20} MiB for "
                  f"{gpu_buffers >> 20} MiB of buffers (tolerance +{CONTEXT_SLACK >> 20} MiB)")
            on_gpu = r["memoryByDevice"].get(on[0], 0) if on else 0
            check(on_gpu >= gpu_buffers, f"{model}: the scheduler counts {on_gpu >> 20} MiB on its GPU ({r['memoryByDevice']})")
        with urllib.request.urlopen(m.url(m.ollama) + "/api/ps", timeout=10) as resp:
            ps = {e["name"]: e for e in json.loads(resp.read())["models"]}
        for model in ("a", "b"):
            e = ps.get(model) or ps.get(model + ":latest") or {}
            check(e.get("size_vram", 0) > 0 and e["size_vram"] <= e["size"], f"/api/ps {model}: size {e.get('size')}, size_vram {e.get('size_vram')}")

        print(f"3. an over-size load: context {huge_ctx} tokens ({huge_ctx * KV_PER_TOKEN >> 30} GiB of KV), all layers on the GPU")
        request = urllib.request.Request(m.url(m.ollama) + "/api/chat", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"model": "huge", "messages": [{"role": "user", "content": "Hi"}],
                                                          "options": {"num_predict": 4}}).encode())
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=600) as resp:
            lines = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
        thinking = "".join(line.get("message", {}).get("thinking", "") for line in lines)
        steps = [line for line in thinking.splitlines() if "out of memory on" in line]
        print(f"        {time.monotonic() - started:.1f} s; steps shown to the client:")
        for s in steps:
            print(f"          {s}")
        check(len(steps) >= 1, "the ladder's steps reach the waiting client")
        with open(os.path.join(m.state, "logs", "runner-manager.log")) as f:
            logged = [line.strip() for line in f if "loading huge: out of memory" in line]
        check(all(any(s.removeprefix("huge: ") in line for line in logged) for s in steps),
              f"what the client saw is what runner-manager logged ({len(logged)} steps there)")
        r = runner_of(m, "huge")
        if r["state"] == "ready":
            print(f"        loaded: context {r['contextLength']}, devices {r.get('devices')}, memory {r['memoryByDevice']}")
            check(r["contextLength"] < huge_ctx or r.get("devices") == [], "it fits by a smaller context, fewer layers or the CPU")
            check(lines[-1].get("done") is True and "error" not in lines[-1], "the client got its answer")
        else:
            error = lines[-1].get("error", "")
            print(f"        failed: {error}")
            check("model huge ran out of memory on" in error and "is free for it" in error, "the precise error names device, need and room")
        if len(gpus) == 1:  # with several GPUs the two may sit on another one than the load that failed
            states = {r["model"]: r["state"] for r in rpc(m.runners_socket, "runners.list")}
            check(states.get("a") != "ready" and states.get("b") != "ready", f"the idle models on that GPU were evicted first: {states}")
    finally:
        m.stop()
    print("gpu_check: " + ("all checks passed" if not failures else f"{len(failures)} check(s) failed"))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
