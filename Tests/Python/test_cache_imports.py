"""The models users already have, indexed in place: fixture trees in Ollama's, LM Studio's, the Hugging Face
cache's and llama.cpp's layouts (symlinks included), built here from the demo GGUF, are discovered by the real
registry with the names each tool gives them and their metadata, served by a real llama-server, and left exactly
as they were."""
import hashlib
import json
import os
import time
import urllib.request

import ollama
import pytest

from conftest import MODEL, demo_model_at, rpc, sha256_of, start_mesh, stop_mesh


same_file = demo_model_at
sha256 = sha256_of


def tree(root):
    """Every entry under root: path, type, size, mtime (links not followed)."""
    out = []
    for base, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            p = os.path.join(base, name)
            st = os.lstat(p)
            out.append((p, st.st_mode, st.st_size, st.st_mtime_ns, os.readlink(p) if os.path.islink(p) else None))
    return sorted(out)


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    digest = sha256(MODEL)
    # Ollama: manifests/<host>/<namespace>/<model>/<tag> → blobs/sha256-<hex> (the GGUF, here a link to it),
    # with params and system layers.
    ollama_root = root / "ollama"
    blobs = ollama_root / "blobs"
    blobs.mkdir(parents=True)
    os.symlink(MODEL, blobs / f"sha256-{digest}")
    params = json.dumps({"num_ctx": 512, "temperature": 0.2}).encode()
    system = b"You are a terse assistant."
    layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": os.path.getsize(MODEL)}]
    for kind, body in (("params", params), ("system", system)):
        d = hashlib.sha256(body).hexdigest()
        (blobs / f"sha256-{d}").write_bytes(body)
        layers.append({"mediaType": f"application/vnd.ollama.image.{kind}", "digest": f"sha256:{d}", "size": len(body)})
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
                "layers": layers}
    for rel in ("registry.ollama.ai/library/smollm2/135m", "hf.co/bartowski/SmolLM2-GGUF/Q4_1"):
        p = ollama_root / "manifests" / rel
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(manifest))
    # LM Studio: <models>/<publisher>/<repo>/<file>.gguf.
    lms = root / "lmstudio"
    same_file(str(lms / "lmstudio-community" / "SmolLM2-135M-Instruct-GGUF" / "SmolLM2-135M-Instruct-Q4_1.gguf"))
    # The Hugging Face cache: models--org--repo, refs/main → snapshots/<commit>/<file> → ../../blobs/<sha256>.
    hf = root / "hf"
    repo = hf / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
    commit = "a" * 40
    same_file(str(repo / "blobs" / digest))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    os.symlink(f"../../blobs/{digest}", repo / "snapshots" / commit / "smollm2-135m-instruct-q4_1.gguf")
    # llama.cpp's older flat cache.
    llama = root / "llama"
    same_file(str(llama / "bartowski_SmolLM2-GGUF_SmolLM2-Q4_1.gguf"))
    return {"root": root, "ollama": str(ollama_root), "lmstudio": str(lms), "huggingface": str(hf), "llama_cpp": str(llama)}


@pytest.fixture(scope="module")
def mesh(caches):
    before = tree(caches["root"])
    m = start_mesh({"paths": {"import": {k: caches[k] for k in ("ollama", "lmstudio", "huggingface", "llama_cpp")}}},
                   {"models": {}})
    m.before = before
    yield m
    stop_mesh(m)


NAMES = {
    "smollm2:135m": "ollama",
    "hf.co/bartowski/SmolLM2-GGUF:Q4_1": "ollama",
    "lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf": "lmstudio",
    "hf.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf": "huggingface",
    "llama.cpp/bartowski_SmolLM2-GGUF_SmolLM2-Q4_1": "llama.cpp",
}


def test_every_cache_is_found_with_the_names_its_tool_gives(mesh, caches):
    snap = {m["id"]: m for m in rpc(mesh, "registry.sock", "registry.snapshot")["models"]}
    # Both Ollama manifests name one blob: one file, one model (the first name in order).
    found = {i: m["source"] for i, m in snap.items()}
    expected = dict(NAMES)
    expected.pop("smollm2:135m")
    assert found == expected, found
    for m in snap.values():
        assert m["state"] == "available" and m["metadata"]["architecture"] == "llama" and m["metadata"]["contextLength"] == 8192
        assert os.path.realpath(m["path"]) == m["path"], "links followed to the file itself"
    hf = snap["hf.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q4_1.gguf"]
    assert hf["path"].endswith("/blobs/" + sha256(MODEL))


def test_ollama_layers_are_the_models_defaults(mesh):
    c = ollama.Client(host=mesh.url(mesh.ollama))
    shown = c.show("hf.co/bartowski/SmolLM2-GGUF:Q4_1")
    assert shown.parameters.split() == ["num_ctx", "512", "temperature", "0.2"], "as Ollama shows its own"
    req = urllib.request.Request(mesh.url(mesh.ollama) + "/api/show", data=json.dumps({"model": "hf.co/bartowski/SmolLM2-GGUF:Q4_1"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["system"] == "You are a terse assistant."
    reply = c.chat(model="hf.co/bartowski/SmolLM2-GGUF:Q4_1", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4})
    assert reply.message.content
    runner = next(r for r in rpc(mesh, "runners.sock", "runners.list") if r["model"] == "hf.co/bartowski/SmolLM2-GGUF:Q4_1")
    assert runner["contextLength"] == 512, "Ollama's num_ctx became the runner's ctx_size"


def test_the_listings_and_the_dashboard_show_where_each_model_comes_from(mesh):
    with urllib.request.urlopen(mesh.url(mesh.ollama) + "/api/tags", timeout=10) as r:
        tags = {m["name"] for m in json.loads(r.read())["models"]}
    assert "hf.co/bartowski/SmolLM2-GGUF:Q4_1" in tags and "llama.cpp/bartowski_SmolLM2-GGUF_SmolLM2-Q4_1:latest" in tags
    with urllib.request.urlopen(mesh.url(mesh.api) + "/api/models", timeout=10) as r:
        sources = {m["model"]["id"]: m["model"]["source"] for m in json.loads(r.read())["models"]}
    assert sources["lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf"] == "lmstudio"


def test_nothing_in_the_caches_changed(mesh, caches):
    rpc(mesh, "registry.sock", "registry.discover")
    assert tree(caches["root"]) == mesh.before
    config = json.load(open(os.path.join(mesh.config, "models_config.json")))
    assert config["models"] == {}, "cache models live in the snapshot, not in models_config.json"


def test_a_source_turned_off_disappears(mesh, caches):
    docs = rpc(mesh, "registry.sock", "registry.documents")
    app = docs["app"]
    app["paths"]["import"]["llama_cpp"] = False
    rpc(mesh, "registry.sock", "registry.updateApp", {"revision": docs["revision"], "value": app})
    rpc(mesh, "registry.sock", "registry.discover")
    ids = [m["id"] for m in rpc(mesh, "registry.sock", "registry.snapshot")["models"]]
    assert "llama.cpp/bartowski_SmolLM2-GGUF_SmolLM2-Q4_1" not in ids and "lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_1.gguf" in ids
    deadline = time.time() + 5
    while time.time() < deadline:
        with urllib.request.urlopen(mesh.url(mesh.ollama) + "/api/tags", timeout=10) as r:
            if not any(m["name"].startswith("llama.cpp/") for m in json.loads(r.read())["models"]):
                break
        time.sleep(0.1)
    else:
        raise AssertionError("the gateway still lists the llama.cpp model")
