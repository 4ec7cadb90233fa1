#!/usr/bin/env python3
"""The gateway's own time per request, as it reports it (`x-llama-runner-overhead-ms`: from the request's
head to the response's head, less the wait for a runner and the runner's own time), for streamed chat
completions and for Ollama chats, against one or two builds in the same run (alternating rounds, so both see
the same machine). Prints medians, p90 and p99 per build and path, and the ratio B/A of the medians.

Usage: python3 scripts/bench_overhead.py [--a BINDIR] [--b BINDIR] [--rounds 5] [--requests 100]
(--a defaults to this checkout's release build; without --b only A is measured.)"""
import argparse, http.client, json, os, statistics

from benchlib import MODEL, Mesh, pct, release_bin_dir

PATHS = {
    "openai stream": ("/v1/chat/completions", {"model": "smol", "stream": True, "max_tokens": 4, "temperature": 0,
                                               "messages": [{"role": "user", "content": "Hi"}]}),
    "ollama chat": ("/api/chat", {"model": "smol", "stream": True, "options": {"num_predict": 4, "temperature": 0},
                                  "messages": [{"role": "user", "content": "Hi"}]}),
}


def measure(mesh, path, body, n):
    conn = http.client.HTTPConnection("127.0.0.1", mesh.ollama, timeout=60)
    out = []
    data = json.dumps(body)
    for _ in range(n):
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        text = r.read()
        if r.status != 200 or r.getheader("x-llama-runner-overhead-ms") is None:
            raise SystemExit(f"{path} answered {r.status} without the overhead header: {text[:300]!r}")
        out.append(float(r.getheader("x-llama-runner-overhead-ms")))
    conn.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", default=None)
    ap.add_argument("--b", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=100)
    args = ap.parse_args()
    builds = {"A": args.a or release_bin_dir()}
    if args.b:
        builds["B"] = args.b
    models = {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 512}}}}
    meshes = {k: Mesh(f"lr-overhead-{k}-", {}, models, bindir=os.path.abspath(v), bootstrap=False) for k, v in builds.items()}
    try:
        for m in meshes.values():
            for path, body in PATHS.values():
                measure(m, path, body, 20)  # load the model, warm the connections
        figures = {(k, p): [] for k in meshes for p in PATHS}
        for _ in range(args.rounds):
            for name, (path, body) in PATHS.items():
                for k, m in meshes.items():
                    figures[(k, name)] += measure(m, path, body, args.requests)
        print(f"gateway overhead (x-llama-runner-overhead-ms), {args.rounds} x {args.requests} requests per build and path")
        print("| build | path | median | p90 | p99 |")
        print("|---|---|---:|---:|---:|")
        for (k, name), v in figures.items():
            print(f"| {k} ({builds[k]}) | {name} | {statistics.median(v):.3f} ms | {pct(v, 90):.3f} ms | {pct(v, 99):.3f} ms |")
        if "B" in meshes:
            for name in PATHS:
                a, b = statistics.median(figures[("A", name)]), statistics.median(figures[("B", name)])
                print(f"{name}: B/A median = {b / a:.2f}")
    finally:
        for m in meshes.values():
            m.stop()


if __name__ == "__main__":
    main()
