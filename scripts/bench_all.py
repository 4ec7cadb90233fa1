#!/usr/bin/env python3
"""`make bench`: every benchmark in one go, gathered into docs/benchmarks.md with the machine described.

Runs, one after another on the same machine: bench_gateway (proxy overhead against llama-server direct,
router mode and LiteLLM; swap; cold start; idle memory), bench_http (capacity with wrk against nginx and
llama-server's and the router's /health), bench_load (256 streaming clients), bench_audio (speech to
text), bench_loop (event-loop latency while an upload is spooled and discovery scans), bench_lmstudio
(LM Studio's websocket predict against the OpenAI stream) and bench_pull (hub pulls against curl). Each prints its own figures as it finishes; the file is written at the end. Figures, not assertions.
Usage: python3 scripts/bench_all.py [--out docs/benchmarks.md]
"""
import argparse, os, platform, subprocess, sys, tempfile, time

from benchlib import ROOT

SECTIONS = [
    ("bench_gateway.py", "1, 3, 4, 5: proxy overhead, swap, cold start, memory", "--write"),
    ("bench_http.py", "2: gateway capacity", "--markdown"),
    ("bench_load.py", "6: 256 concurrent streaming clients", "--markdown"),
    ("bench_audio.py", "Speech to text", "--markdown"),
    ("bench_loop.py", "Event-loop latency under file work", "--markdown"),
    ("bench_lmstudio.py", "LM Studio's SDK protocol against the OpenAI API", "--markdown"),
    ("bench_pull.py", "Pulls from the hub against curl", "--markdown"),
]


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.splitlines()[0:1]
    return (f"{os.cpu_count()} cores ({cpu}), {mem / 1048576:.0f} GiB, {platform.system()} {platform.release()}, "
            f"{swift[0] if swift else 'swift ?'}; shared machine, benchmarks and the servers on the same cores")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    args = ap.parse_args()
    parts = []
    with tempfile.TemporaryDirectory(prefix="lr-bench-all-") as tmp:
        for script, title, flag in SECTIONS:
            out = os.path.join(tmp, script + ".md")
            print(f"==> {script}", flush=True)
            started = time.time()
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), flag, out], check=True)
            text = open(out).read()
            if text.startswith("# Benchmarks"):  # bench_gateway's own header
                text = text.split("\n\n", 2)[2]
            parts.append(f"## {title}\n\n`scripts/{script}`, {time.time() - started:.0f} s.\n\n{text.strip()}\n")
    with open(args.out, "w") as f:
        f.write("# Benchmarks\n\nWritten by `make bench` (scripts/bench_all.py) on "
                f"{time.strftime('%Y-%m-%d', time.gmtime())}; release builds, one machine, one run.\n\n"
                f"Machine: {machine()}.\n\n" + "\n".join(parts))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
