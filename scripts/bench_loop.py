#!/usr/bin/env python3
"""`make bench-loop`: does file work stall the event loop? The latency of `GET /api/version` (the
gateway's own loop) and of `GET /api/config` (gateway -> model-registry round trip), probed back to back
on one keep-alive connection each, at rest, while a 100 MB audio upload is spooled to disk (the model
field comes last, so the gateway spools the whole file before it can pick a runner), and while the
registry's discovery scans 2,000 new GGUF files. Figures, not assertions (the machine is shared).

Usage: python3 scripts/bench_loop.py [--markdown FILE] [--bin-dir DIR] [--files 2000] [--upload-mb 100]
`--bin-dir` runs another build (e.g. an older commit's) for a before/after comparison in the same run.
"""
import argparse, http.client, json, os, shutil, socket, struct, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import Mesh, Report, pct, rpc  # noqa: E402


def gguf(path, name):
    """A small valid GGUF v3 file: header and key/values, no tensors (the registry reads only these)."""
    def string(s):
        b = s.encode()
        return struct.pack("<Q", len(b)) + b
    kvs = [("general.architecture", 8, string("llama")), ("general.name", 8, string(name)),
           ("llama.context_length", 4, struct.pack("<I", 2048)), ("llama.block_count", 4, struct.pack("<I", 2)),
           ("llama.embedding_length", 4, struct.pack("<I", 64)), ("general.file_type", 4, struct.pack("<I", 2))]
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, kind, value in kvs:
        body += string(key) + struct.pack("<I", kind) + value
    with open(path, "wb") as f:
        f.write(body)


class Prober(threading.Thread):
    """GET `path` back to back on one connection, recording (start time, latency ms)."""
    def __init__(self, port, path):
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stop.is_set():
            t = time.perf_counter()
            c.request("GET", self.path)
            r = c.getresponse()
            r.read()
            self.samples.append((t, (time.perf_counter() - t) * 1000))
            time.sleep(0.001)
        c.close()

    def window(self, start, end):
        return [ms for t, ms in self.samples if start <= t <= end]


def upload(port, megabytes):
    """A file-first multipart upload whose model field (an unknown model) comes last."""
    boundary = "benchloopboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nno-such-model\r\n--{boundary}--\r\n".encode()
    chunk = b"\0" * (1 << 20)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {len(head) + megabytes * len(chunk) + len(tail)}\r\n\r\n").encode() + head)
    for _ in range(megabytes):
        s.sendall(chunk)
    s.sendall(tail)
    reply = s.recv(4096).split(b"\r\n", 1)[0].decode()
    s.close()
    return reply


def summary(samples):
    if not samples:
        return "no samples"
    s = sorted(samples)
    return f"p50 {pct(s, 50):.2f} ms, p99 {pct(s, 99):.2f} ms, max {s[-1]:.1f} ms ({len(s)} requests)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown")
    ap.add_argument("--bin-dir")
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--upload-mb", type=int, default=100)
    args = ap.parse_args()
    report = Report()
    models_dir = tempfile.mkdtemp(prefix="lr-bench-loop-models-")
    mesh = Mesh("lr-bench-loop-", {"paths": {"models_dirs": [models_dir]},
                                   "limits": {"request_body_bytes": (args.upload_mb + 10) << 20}}, {"models": {}}, bindir=args.bin_dir)
    version = Prober(mesh.ollama, "/api/version")
    config = Prober(mesh.api, "/api/config")
    try:
        version.start()
        config.start()
        time.sleep(0.5)
        rest = (time.perf_counter(), None)
        time.sleep(3)
        rest = (rest[0], time.perf_counter())

        start = time.perf_counter()
        answer = upload(mesh.lmstudio, args.upload_mb)
        spool = (start, time.perf_counter())
        time.sleep(0.5)

        for i in range(args.files):
            gguf(os.path.join(models_dir, f"bench-model-{i:05d}.gguf"), f"bench {i}")
        start = time.perf_counter()
        found = rpc(mesh.state + "/run/registry.sock", "registry.discover", {}, timeout=600)
        scan = (start, time.perf_counter())
        time.sleep(0.3)
    finally:
        version.stop.set()
        config.stop.set()
        version.join(timeout=10)
        config.join(timeout=10)
        mesh.stop()
        shutil.rmtree(models_dir, ignore_errors=True)

    report(f"Event-loop latency under file work ({'--bin-dir ' + args.bin_dir if args.bin_dir else 'this build'}):")
    report()
    report("| | `GET /api/version` (gateway) | `GET /api/config` (gateway → registry) | took |")
    report("|---|---|---|---:|")
    report(f"| at rest | {summary(version.window(*rest))} | {summary(config.window(*rest))} | 3.0 s |")
    report(f"| {args.upload_mb} MB upload spooled ({answer.split(' ', 1)[1] if ' ' in answer else answer}) | {summary(version.window(*spool))} "
           f"| {summary(config.window(*spool))} | {spool[1] - spool[0]:.1f} s |")
    report(f"| discovery of {args.files} GGUF files ({len(found['added'])} added) | {summary(version.window(*scan))} "
           f"| {summary(config.window(*scan))} | {scan[1] - scan[0]:.1f} s |")
    report.write(args.markdown)


if __name__ == "__main__":
    main()
