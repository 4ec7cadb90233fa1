#!/usr/bin/env python3
"""Two builds side by side: each runs its own mesh (release executables from BINDIR_A and BINDIR_B,
e.g. this checkout's and an older commit's built in a `git worktree`), and wrk drives
GET /api/version on each in alternation, `--rounds` times per connection count. Prints the medians
and the ratio A/B. Figures, not assertions: the machine is shared and noisy, so compare within one run.

Usage: python3 scripts/bench_ab.py BINDIR_A BINDIR_B [--connections 1,16,64] [--rounds 3] [--duration 3]
"""
import argparse, re, statistics, subprocess

from benchlib import Mesh


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--connections", default="1,16,64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=3)
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    meshes = {"A": Mesh("lr-ab-", {}, {}, bindir=args.a), "B": Mesh("lr-ab-", {}, {}, bindir=args.b)}
    runs = {(k, c): [] for k in meshes for c in conns}
    try:
        for _ in range(args.rounds):
            for c in conns:
                for k, m in meshes.items():
                    out = subprocess.run(["wrk", f"-t{1 if c == 1 else 2}", f"-c{c}", f"-d{args.duration}s", m.url(m.ollama) + "/api/version"],
                                         capture_output=True, text=True, check=True).stdout
                    runs[(k, c)].append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
    finally:
        for m in meshes.values():
            m.stop()
    print(f"A = {args.a}\nB = {args.b}\nGET /api/version, wrk {args.duration} s, {args.rounds} alternations, medians\n")
    print("| connections | A req/s | B req/s | A / B |")
    print("|---:|---:|---:|---:|")
    for c in conns:
        a, b = statistics.median(runs[("A", c)]), statistics.median(runs[("B", c)])
        print(f"| {c} | {a:,.0f} | {b:,.0f} | {a / b:.2f}× |")


if __name__ == "__main__":
    main()
