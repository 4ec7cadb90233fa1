#!/usr/bin/env python3
"""Speech to text through the gateway against whisper-server direct.

The same espeak-ng clip (16 kHz mono WAV) is transcribed in alternating order straight by the runner's
whisper-server and through the gateway's /v1/audio/transcriptions (model field first, as the OpenAI SDK
sends it), then through the gateway with the file first (curl's order, spooled) — N rounds. Prints the
median and p90 of the total time and the gateway's added time, and the gateway's RSS before and after
uploading a 20 MB file (the spool keeps uploads out of memory). Release builds. Figures, not assertions.
Usage: python3 scripts/bench_audio.py [--rounds 20]
"""
import argparse, http.client, json, os, shutil, statistics, subprocess, tempfile, time, uuid

from benchlib import Mesh, Report, ROOT, pct, rpc, rss_kb

WHISPER_MODEL = os.path.join(ROOT, "models", "ggml-tiny.en.bin")


def form(audio, model_first=True):
    boundary = uuid.uuid4().hex
    model = f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n".encode()
    file = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + audio + b"\r\n"
    body = (model + file if model_first else file + model) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def timed(port, body, ctype):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    conn.request("POST", "/v1/audio/transcriptions", body=body, headers={"Content-Type": ctype})
    r = conn.getresponse()
    data = r.read()
    elapsed = (time.perf_counter() - start) * 1000
    conn.close()
    assert r.status == 200, (r.status, data[:200])
    return elapsed, json.loads(data)["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--markdown", help="also write the report to this file")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="lr-bench-audio-clip-")
    clip = os.path.join(work, "clip.wav")
    subprocess.run(["espeak-ng", "-s", "140", "-w", clip + ".raw", "Please send the report to the office before Friday afternoon."], check=True)
    subprocess.run(["sox", clip + ".raw", "-r", "16000", "-c", "1", "-b", "16", clip], check=True)
    audio = open(clip, "rb").read()
    shutil.rmtree(work, ignore_errors=True)
    mesh = Mesh("lr-bench-audio-", {"limits": {"request_body_bytes": 64 << 20}},
                {"models": {"whisper": {"model_path": WHISPER_MODEL, "llama_cpp_runtime": "whisper-server", "kind": "audio"}}})
    lmstudio = mesh.lmstudio
    try:
        body, ctype = form(audio)
        timed(lmstudio, body, ctype)  # loads the model
        runner = rpc(mesh.runners_socket, "runners.list")[0]
        direct_port = int(runner["endpoint"].rsplit(":", 1)[1])
        legs = {"direct": (direct_port, True), "gateway": (lmstudio, True), "gateway, file first": (lmstudio, False)}
        results = {name: [] for name in legs}
        names = list(legs)
        text = ""
        for i in range(args.rounds):
            for name in names[i % 3:] + names[:i % 3]:
                port, model_first = legs[name]
                body, ctype = form(audio, model_first)
                elapsed, text = timed(port, body, ctype)
                results[name].append(elapsed)
        gateway_pid = mesh.pid("gateway")
        before = rss_kb(gateway_pid)
        big, ctype = form(audio + b"\0" * (20 << 20), model_first=False)
        conn = http.client.HTTPConnection("127.0.0.1", lmstudio, timeout=300)
        conn.request("POST", "/v1/audio/transcriptions", body=big, headers={"Content-Type": ctype})
        big_status = conn.getresponse().status
        after = rss_kb(gateway_pid)
    finally:
        mesh.stop()

    report = Report()
    base = statistics.median(results["direct"])
    report(f"whisper tiny.en, {len(audio) / 32000:.1f} s clip, {args.rounds} rounds in rotating order; last transcript: {text.strip()!r}\n")
    report("| path | median ms | p90 ms | added (median) |")
    report("|---|---:|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        report(f"| {name} | {median:.1f} | {pct(values, 90):.1f} | {median - base:+.1f} ms |")
    report(f"\ngateway RSS {before / 1024:.1f} MB before and {after / 1024:.1f} MB after a 20 MB upload sent file-first "
          f"(status {big_status}: whisper reads the padded WAV)")

    report.write(args.markdown)

if __name__ == "__main__":
    main()
