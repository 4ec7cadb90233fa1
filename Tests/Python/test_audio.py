"""Speech to text through the gateway: the real whisper-server built by scripts/install_whisper_server.sh,
the Whisper tiny.en model converted by scripts/whisper_ct2_to_ggml.py, clips spoken by espeak-ng, and
the official `openai` client."""
import os, shutil, signal, subprocess, tempfile, time, urllib.request

import httpx
import openai
import pytest

from conftest import MODEL, ROOT, rpc, start_mesh, stop_mesh

WHISPER_MODEL = os.path.join(ROOT, "models", "ggml-tiny.en.bin")
SENTENCE = "Please send the report to the office before Friday afternoon."
KEY_WORDS = ["report", "office", "friday", "afternoon"]
LIMIT = 4 << 20


def speak(text, path, pad_seconds=0):
    """A 16 kHz mono WAV of `text` spoken slowly (tiny.en transcribes slow speech well)."""
    raw = path + ".raw.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", raw, text], check=True)
    subprocess.run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", path] + (["pad", "0", str(pad_seconds)] if pad_seconds else []), check=True)
    os.unlink(raw)
    return path


@pytest.fixture(scope="module")
def clips():
    for tool in ("espeak-ng", "sox"):
        assert shutil.which(tool), f"{tool} is missing: scripts/test.sh installs Debian's espeak-ng and sox"
    d = tempfile.mkdtemp(prefix="lr-audio-")
    yield {"speech": speak(SENTENCE, os.path.join(d, "speech.wav")),
           # speech then silence: 1.6 MB, more than the gateway keeps in memory while it looks for `model`
           "long": speak(SENTENCE, os.path.join(d, "long.wav"), pad_seconds=45)}
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def audio_mesh():
    assert os.path.exists(WHISPER_MODEL), "the Whisper model is missing: run scripts/bootstrap.sh"
    m = start_mesh({"limits": {"max_loaded_models": 2, "request_body_bytes": LIMIT}}, {"models": {
        "whisper": {"model_path": WHISPER_MODEL, "llama_cpp_runtime": "whisper-server", "kind": "audio", "aliases": ["whisper-1"]},
        "whisper-ttl": {"model_path": WHISPER_MODEL, "llama_cpp_runtime": "whisper-server", "kind": "audio", "ttl_seconds": 2},
        "smol": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
    }})
    yield m
    stop_mesh(m)


def client(m, port=None):
    return openai.OpenAI(base_url=m.url(port or m.lmstudio) + "/v1", api_key="none", max_retries=0, timeout=120)


def assert_words(text):
    lowered = text.lower()
    missing = [w for w in KEY_WORDS if w not in lowered]
    assert not missing, f"{missing} not in the transcript {text!r}"


def post_form(m, path, fields, files, port=None):
    return httpx.post(m.url(port or m.lmstudio) + path, data=fields, files=files, timeout=120)


def test_openai_client_transcribes_speech(audio_mesh, clips):
    with open(clips["speech"], "rb") as f:
        result = client(audio_mesh).audio.transcriptions.create(model="whisper", file=f)
    assert_words(result.text)
    ready = [r for r in rpc(audio_mesh, "runners.sock", "runners.list") if r["model"] == "whisper"]
    assert ready and ready[0]["state"] == "ready"


def test_each_response_format_has_its_content_type(audio_mesh, clips):
    audio = open(clips["speech"], "rb").read()
    expected = {"json": "application/json", "verbose_json": "application/json", "text": "text/plain",
                "srt": "application/x-subrip", "vtt": "text/vtt"}
    for fmt, ctype in expected.items():
        r = post_form(audio_mesh, "/v1/audio/transcriptions", {"model": "whisper-1", "response_format": fmt},
                      {"file": ("speech.wav", audio, "audio/wav")})
        assert r.status_code == 200, (fmt, r.text)
        assert r.headers["content-type"].startswith(ctype), (fmt, r.headers["content-type"])
        assert "x-llama-runner-overhead-ms" in r.headers
        if fmt == "json":
            assert_words(r.json()["text"])
        elif fmt == "verbose_json":
            body = r.json()
            assert body["segments"] and abs(body["duration"] - 4.0) < 2.5, body
        elif fmt == "text":
            assert not r.text.lstrip().startswith("{")
            assert_words(r.text)
        elif fmt == "srt":
            assert r.text.lstrip().startswith("1\n") and "00:00:00,000 --> " in r.text
            assert_words(r.text)
        else:
            assert r.text.startswith("WEBVTT") and "00:00:00.000 --> " in r.text
            assert_words(r.text)
    # The official client's own text and srt paths parse these as plain strings.
    with open(clips["speech"], "rb") as f:
        srt = client(audio_mesh).audio.transcriptions.create(model="whisper", file=f, response_format="srt")
    assert "-->" in srt


def test_translation_answers_on_both_ports(audio_mesh, clips):
    for port in (audio_mesh.lmstudio, audio_mesh.ollama):
        with open(clips["speech"], "rb") as f:
            result = client(audio_mesh, port).audio.translations.create(model="whisper", file=f)
        assert_words(result.text)


def test_model_after_a_large_file_is_spooled_not_buffered(audio_mesh, clips):
    """curl-style field order (file first), 1.6 MB: the gateway spools beyond 1 MiB to an unlinked file."""
    audio = open(clips["long"], "rb").read()
    assert len(audio) > 1 << 20
    boundary = "lr-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + audio + (
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\ntext\r\n--{boundary}--\r\n").encode()

    def chunks():  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = httpx.post(audio_mesh.url(audio_mesh.ollama) + "/v1/audio/transcriptions", content=chunks(), timeout=180,
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200, r.text
    assert_words(r.text)
    run = os.path.join(audio_mesh.state, "run")
    assert not [n for n in os.listdir(run) if n.startswith("upload-")], os.listdir(run)


def test_chat_model_for_transcription_and_audio_model_for_chat_are_400(audio_mesh, clips):
    with open(clips["speech"], "rb") as f, pytest.raises(openai.BadRequestError) as e:
        client(audio_mesh).audio.transcriptions.create(model="smol", file=f)
    assert "audio" in str(e.value) and "whisper" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client(audio_mesh).chat.completions.create(model="whisper", messages=[{"role": "user", "content": "hi"}])
    assert "/v1/audio/transcriptions" in str(e.value)
    r = httpx.post(audio_mesh.url(audio_mesh.ollama) + "/api/chat", json={"model": "whisper", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and "audio" in r.json()["error"]
    # Nothing was loaded for the refused requests.
    assert "smol" not in [x["model"] for x in rpc(audio_mesh, "runners.sock", "runners.list")]


def test_bad_uploads_get_precise_openai_errors(audio_mesh, clips):
    audio = open(clips["speech"], "rb").read()
    r = httpx.post(audio_mesh.url(audio_mesh.lmstudio) + "/v1/audio/transcriptions", json={"model": "whisper"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]
    r = post_form(audio_mesh, "/v1/audio/transcriptions", {"model": "no-such-model"}, {"file": ("a.wav", audio, "audio/wav")})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = post_form(audio_mesh, "/v1/audio/transcriptions", {"model": "whisper"}, {"other": ("a.wav", audio, "audio/wav")})
    assert r.status_code == 400 and "file" in r.json()["error"]["message"]
    r = post_form(audio_mesh, "/v1/audio/transcriptions", {"model": "whisper"}, {"file": ("a.wav", b"not audio at all", "audio/wav")})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("whisper-server (whisper)")
    big = b"\0" * (LIMIT + 1)
    r = post_form(audio_mesh, "/v1/audio/transcriptions", {"model": "whisper"}, {"file": ("big.wav", big, "audio/wav")})
    assert r.status_code == 413 and str(LIMIT) in r.json()["error"]["message"]

    def stream():  # chunked, no Content-Length: refused once the count passes the limit
        yield b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
        for _ in range(LIMIT // 65536 + 2):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"
    r = httpx.post(audio_mesh.url(audio_mesh.lmstudio) + "/v1/audio/transcriptions", content=stream(), timeout=60,
                   headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and str(LIMIT) in r.json()["error"]["message"]
    assert rpc(audio_mesh, "runners.sock", "runners.list")  # still serving
    # A malformed form (no closing boundary) is refused, not relayed.
    r = httpx.post(audio_mesh.url(audio_mesh.lmstudio) + "/v1/audio/transcriptions", timeout=30,
                   headers={"Content-Type": "multipart/form-data; boundary=xyz"},
                   content=b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + audio[:1000])
    assert r.status_code == 400 and "closing boundary" in r.json()["error"]["message"]


def test_metrics_record_audio_seconds_and_processing_time(audio_mesh, clips):
    with open(clips["speech"], "rb") as f:
        client(audio_mesh).audio.transcriptions.create(model="whisper", file=f)
    records = rpc(audio_mesh, "metrics.sock", "metrics.requests", {"limit": 20})
    audio = [r["record"] for r in records if r["record"]["route"] == "/v1/audio/transcriptions" and r["record"]["status"] == 200]
    assert audio and audio[0]["model"] == "whisper"
    duration = os.path.getsize(clips["speech"]) - 44
    assert abs(audio[0]["audioSeconds"] - duration / 32000) < 0.05, audio[0]
    text = urllib.request.urlopen(audio_mesh.url(audio_mesh.api) + "/metrics", timeout=10).read().decode()
    line = next(l for l in text.splitlines() if l.startswith('llama_runner_audio_seconds_total{model="whisper"}'))
    assert float(line.split()[-1]) >= audio[0]["audioSeconds"]
    assert 'llama_runner_audio_processing_seconds_count{model="whisper"}' in text


def runners(m):
    return {r["model"]: r for r in rpc(m, "runners.sock", "runners.list") if r["state"] in ("loading", "ready")}


def wait_for(predicate, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_whisper_runners_are_scheduled_like_llama_server(audio_mesh, clips):
    """On demand, the idle timeout, eviction within max_loaded_models (2 here) and crash recovery."""
    def transcribe(model):
        with open(clips["speech"], "rb") as f:
            assert_words(client(audio_mesh).audio.transcriptions.create(model=model, file=f).text)

    # TTL: a model with ttl_seconds 2 unloads by itself once idle.
    transcribe("whisper-ttl")
    assert "whisper-ttl" in runners(audio_mesh)
    assert wait_for(lambda: "whisper-ttl" not in runners(audio_mesh), 15), runners(audio_mesh)

    # Eviction: whisper, then smol, then whisper-ttl: the least recently used (whisper) makes room.
    transcribe("whisper")
    client(audio_mesh).chat.completions.create(model="smol", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    transcribe("whisper-ttl")
    loaded = runners(audio_mesh)
    assert set(loaded) == {"smol", "whisper-ttl"}, loaded

    # Crash recovery: whisper-server killed with SIGKILL; the next request starts a new one.
    pid = loaded["whisper-ttl"]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: runners(audio_mesh).get("whisper-ttl", {}).get("pid") != pid, 10)
    transcribe("whisper-ttl")
    assert runners(audio_mesh)["whisper-ttl"]["pid"] != pid


def test_listings_describe_the_audio_model(audio_mesh):
    """OpenAI lists it (like whisper-1); LM Studio as type audio; Ollama apps, which would offer it for
    chat, do not see it in /api/tags, and /api/show gives it no completion capability."""
    ids = [m.id for m in client(audio_mesh).models.list().data]
    assert "whisper" in ids and "smol" in ids
    lm = httpx.get(audio_mesh.url(audio_mesh.lmstudio) + "/api/v0/models/whisper").json()
    assert (lm["type"], lm["arch"], lm["compatibility_type"]) == ("audio", "whisper", "ggml")
    tags = [m["name"] for m in httpx.get(audio_mesh.url(audio_mesh.ollama) + "/api/tags").json()["models"]]
    assert "smol:latest" in tags and not [t for t in tags if t.startswith("whisper")]
    show = httpx.post(audio_mesh.url(audio_mesh.ollama) + "/api/show", json={"model": "whisper"}).json()
    assert show["capabilities"] == [] and show["details"]["family"] == "whisper"
