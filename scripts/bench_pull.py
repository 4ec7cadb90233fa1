#!/usr/bin/env python3
"""Pull throughput: model-registry's downloader against plain curl of the same file from the same server.

A local stand-in for the Hugging Face Hub (Tests/Python/fakehub.py: the hub's API, its resolve redirect and a
CDN with Range) serves a file of random bytes (1 GiB by default). Each round, in alternating order:
- `curl -L` of the resolve URL into a file (the redirect followed, as our pull does, nothing checked);
- the same, then an fsync of the file (our pull's bytes reach the disk before its rename);
- `curl -L | sha256sum` (the hash our pull also computes, nothing written);
- Ollama's `POST /api/pull` with `stream: false` through the gateway: the repository listed, the file
  written to `<models>/<user>/<repo>/<file>.partial`, hashed as it arrives, compared with the LFS oid,
  fsynced, renamed and registered; then `DELETE /api/delete` removes it for the next round.
Over HTTP and over HTTPS (a throwaway CA; OpenSSL on both sides). Prints median MB/s of each, our ratio to
curl, and the peak RSS of model-registry during the pulls (the file never sits in memory). Release builds.
Figures, not assertions.
Usage: python3 scripts/bench_pull.py [--size-mb 1024] [--rounds 5] [--markdown FILE]
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time, urllib.request

from benchlib import Mesh, Report, ROOT, rss_kb

sys.path.insert(0, os.path.join(ROOT, "Tests", "Python"))
from fakehub import FakeHub  # noqa: E402

REPO = "bench/Big-GGUF"
FILE = "big-Q4_K_M.gguf"


def random_file(path, size):
    """`size` bytes of random data, written in 16 MiB blocks (incompressible, so nothing on the path can cheat)."""
    block = os.urandom(16 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
            block = block[1:] + block[:1] if left else block


def curl(url, ca, sink, hashed, synced=False):
    args = ["curl", "-sS", "-L", "--fail", url]
    if ca:
        args += ["--cacert", ca]
    start = time.perf_counter()
    if hashed:
        c = subprocess.Popen(args, stdout=subprocess.PIPE)
        digest = subprocess.run(["sha256sum"], stdin=c.stdout, capture_output=True, text=True, check=True).stdout.split()[0]
        assert c.wait() == 0
    else:
        subprocess.run(args + ["-o", sink], check=True)
        if synced:  # what our pull does before its rename: the bytes on disk, not in the page cache
            fd = os.open(sink, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        digest = None
    elapsed = time.perf_counter() - start
    if not hashed:
        os.unlink(sink)
    return elapsed, digest


def post(mesh, path, body, method="POST"):
    req = urllib.request.Request(mesh.url(mesh.ollama) + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return r.status, r.read()


def pull(mesh, registry_pid, peak):
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(registry_pid))
            time.sleep(0.02)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    status, body = post(mesh, "/api/pull", {"model": f"hf.co/{REPO}:Q4_K_M", "stream": False})
    elapsed = time.perf_counter() - start
    stop.set()
    t.join()
    assert status == 200 and json.loads(body) == {"status": "success"}, body[:300]
    post(mesh, "/api/delete", {"model": f"hf.co/{REPO}:Q4_K_M"}, method="DELETE")
    return elapsed


def leg(source, size, rounds, tls, work):
    with FakeHub({REPO: {FILE: source}}, tls=tls) as hub:
        models = os.path.join(work, "models-tls" if tls else "models")
        os.makedirs(models)
        env = {"HF_ENDPOINT": hub.endpoint}
        if tls:
            env["SSL_CERT_FILE"] = hub.ca_file
        mesh = Mesh("lr-bench-pull-", {"paths": {"models_dirs": [models]}}, {"models": {}}, bootstrap=False, env=env)
        try:
            registry = mesh.pid("model-registry")
            idle = rss_kb(registry)
            peak = [idle]
            url = f"{hub.endpoint}/{REPO}/resolve/main/{FILE}"
            sink = os.path.join(work, "curl.out")
            times = {"curl to a file": [], "curl to a file, then fsync": [], "curl piped to sha256sum": [], "Ollama /api/pull": []}
            expected = None
            pull(mesh, registry, peak)  # warm: connections, the page cache of the source
            for i in range(rounds):
                order = list(times) if i % 2 == 0 else list(reversed(times))
                for name in order:
                    if name == "Ollama /api/pull":
                        times[name].append(pull(mesh, registry, peak))
                    else:
                        elapsed, digest = curl(url, hub.ca_file if tls else None, sink, name == "curl piped to sha256sum", synced="fsync" in name)
                        if digest:
                            assert expected in (None, digest)
                            expected = digest
                        times[name].append(elapsed)
            left = sorted(os.path.relpath(os.path.join(d, f), models) for d, _, fs in os.walk(models) for f in fs)
        finally:
            mesh.stop()
    return times, idle, peak[0], left


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--markdown", help="also write the report to this file")
    args = ap.parse_args()
    subprocess.run([os.path.join(ROOT, "scripts", "bootstrap.sh"), "release"], check=True, stdout=subprocess.DEVNULL)
    size = args.size_mb << 20
    work = tempfile.mkdtemp(prefix="lr-bench-pull-")
    try:
        source = os.path.join(work, FILE)
        random_file(source, size)
        results = {}
        for tls in (False, True):
            results["https" if tls else "http"] = leg(source, size, args.rounds, tls, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = Report()
    report(f"One {size / 1e6:.0f} MB file of random bytes from a local stand-in for the hub (fakehub.py: API, resolve "
           f"redirect, CDN), {args.rounds} rounds in alternating order after a warm-up pull; MB/s = 10^6 bytes per second "
           "of wall time for the whole request (the redirect included).\n")
    report("| transport | path | median s | median MB/s | against curl to a file |")
    report("|---|---|---:|---:|---:|")
    for transport, (times, idle, peak, left) in results.items():
        base = statistics.median(times["curl to a file"])
        for name, values in times.items():
            m = statistics.median(values)
            report(f"| {transport} | {name} | {m:.2f} | {size / m / 1e6:.0f} | {base / m:.2f}× |")
    report("")
    for transport, (times, idle, peak, left) in results.items():
        report(f"- {transport}: model-registry RSS {idle / 1024:.1f} MB idle, peak {peak / 1024:.1f} MB during the pulls; "
               f"left in the models folder after the last delete: {left or 'nothing'}")
    report("\nOur pull also fsyncs the file and its folder before the rename (curl does not), verifies the SHA-256 "
           "against the hub's LFS oid and registers the model (a models_config.json write with its backup).")
    report.write(args.markdown)


if __name__ == "__main__":
    main()
