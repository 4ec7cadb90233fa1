"""Ollama's model management against the real mesh, through the official `ollama` client: create (from an existing
model with new parameters and a system prompt, or from a GGUF uploaded as a blob), copy, delete — which removes only
the files Llama Runner downloaded or stored, never the user's own file in a models folder nor another tool's cache —
and the blob endpoints (HEAD, upload hashed as written, a wrong digest refused with nothing left)."""
import hashlib
import json
import os
import time
import urllib.error
import urllib.request

import ollama
import pytest

from conftest import MODEL, demo_model_at, rpc, sha256_of, start_mesh, stop_mesh
from fakehub import FakeHub

REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


link = demo_model_at


@pytest.fixture(scope="module")
def digest():
    return "sha256:" + sha256_of(MODEL)


@pytest.fixture(scope="module")
def hub():
    with FakeHub({REPO: {FILE: MODEL}}) as h:
        yield h


@pytest.fixture
def mesh(hub, tmp_path):
    """A mesh whose models folder holds one file of the user's (discovered), with an LM Studio cache indexed and the
    fake hub to pull from."""
    models, lms = tmp_path / "models", tmp_path / "lmstudio"
    link(str(models / "mine.gguf"))
    link(str(lms / "pub" / "Repo-GGUF" / "cached-Q4_K_M.gguf"))
    m = start_mesh({"paths": {"models_dirs": [str(models)], "import": {"lmstudio": str(lms)}}, "limits": {"max_loaded_models": 2, "request_body_bytes": 1 << 20}},
                   {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048}}}},
                   env={"HF_ENDPOINT": hub.endpoint})
    m.models, m.lms = models, lms
    yield m
    stop_mesh(m)


def client(m):
    return ollama.Client(host=m.url(m.ollama))


def entries(m):
    return json.load(open(os.path.join(m.config, "models_config.json")))["models"]


def names(m):
    return [x.model.removesuffix(":latest") for x in client(m).list().models]


def raw(m, method, path, data=None, headers=None):
    req = urllib.request.Request(m.url(m.ollama) + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def error_of(call):
    with pytest.raises(ollama.ResponseError) as e:
        call()
    return e.value


# --- create ---------------------------------------------------------------------------------------------

def test_create_from_a_model_with_parameters_and_a_system_prompt(mesh):
    steps = [s.status for s in client(mesh).create("terse", from_="smol", system="Answer in one word.",
                                                   parameters={"num_ctx": 1024, "temperature": 0.1}, stream=True)]
    assert steps[-2:] == ["writing manifest", "success"] and any(s.startswith("using existing layer sha256:") for s in steps)
    assert "terse" in names(mesh) and "smol" in names(mesh)
    e = entries(mesh)["terse"]
    assert e["parameters"]["ctx_size"] == 1024 and e["parameters"]["temp"] == 0.1
    assert e["system_prompt"] == "Answer in one word." and e["source"] == {"type": "created"}
    assert os.path.samefile(e["model_path"] if os.path.isabs(e["model_path"]) else os.path.join(mesh.config, e["model_path"]), MODEL)
    status, body = raw(mesh, "POST", "/api/show", json.dumps({"model": "terse"}).encode())
    shown = json.loads(body)
    assert status == 200 and shown["system"] == "Answer in one word."
    assert shown["parameters"].split() == ["num_ctx", "1024", "temperature", "0.1"], "named as Ollama names them"
    # Served with its own context size, as a model of its own.
    assert client(mesh).chat(model="terse", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2}).message.content is not None
    running = {p.model.removesuffix(":latest"): p for p in client(mesh).ps().models}
    assert running["terse"].context_length == 1024


def test_create_with_parameters_llama_server_lacks_says_so(mesh):
    steps = [s.status for s in client(mesh).create("stops", from_="smol", parameters={"stop": ["<|im_end|>"], "use_mmap": False}, stream=True)]
    assert "ignoring parameter stop: llama-server has no model setting for it" in steps and steps[-1] == "success"
    assert entries(mesh)["stops"]["parameters"] == {"ctx_size": 2048, "no_mmap": True}


def test_create_refuses_what_it_cannot_do_and_changes_nothing(mesh):
    before = entries(mesh)
    assert error_of(lambda: client(mesh).create("x", from_="smol", parameters={"num_ctx": "big"})).status_code == 400
    assert "unknown parameter" in error_of(lambda: client(mesh).create("x", from_="smol", parameters={"bogus": 1})).error
    assert error_of(lambda: client(mesh).create("x", from_="no-such-model")).status_code == 404
    assert error_of(lambda: client(mesh).create("x", from_="smol", quantize="q4_K_M")).status_code == 400
    assert error_of(lambda: client(mesh).create("x")).status_code == 400
    assert error_of(lambda: client(mesh).create("bad name", from_="smol")).status_code == 400
    assert error_of(lambda: client(mesh).create("x", files={"model.gguf": "sha256:" + "0" * 64})).status_code == 404
    assert error_of(lambda: client(mesh).create("x", files={"model.gguf": "md5:abc"})).status_code == 400
    assert entries(mesh) == before


def test_a_blob_uploaded_then_made_a_model(mesh, digest):
    blobs = mesh.models / ".blobs"
    assert raw(mesh, "HEAD", f"/api/blobs/{digest}")[0] == 404
    assert client(mesh).create_blob(MODEL) == digest
    stored = blobs / f"sha256-{digest[7:]}"
    assert stored.exists() and stored.stat().st_size == os.path.getsize(MODEL)
    assert raw(mesh, "HEAD", f"/api/blobs/{digest}")[0] == 200
    assert sorted(p.name for p in blobs.iterdir()) == [stored.name], "no temporary file left"
    # A second upload of the same blob is answered at once.
    assert raw(mesh, "POST", f"/api/blobs/{digest}", b"ignored")[0] == 200
    assert client(mesh).create("uploaded", files={"smol.gguf": digest}).status == "success"
    e = entries(mesh)["uploaded"]
    assert e["source"]["type"] == "created" and e["source"]["files"]
    assert client(mesh).generate(model="uploaded", prompt="hi", options={"num_predict": 2}).response is not None
    # The blob folder is not scanned as models of its own.
    assert sorted(names(mesh)) == sorted(["smol", "mine", "uploaded", "pub/Repo-GGUF/cached-Q4_K_M.gguf"])
    # Deleting the model deletes the blob it owned.
    client(mesh).delete("uploaded")
    assert not stored.exists() and "uploaded" not in names(mesh)


def test_a_blob_with_the_wrong_digest_or_a_bad_name_is_refused_and_leaves_nothing(mesh, digest):
    wrong = "sha256:" + "1" * 64
    status, body = raw(mesh, "POST", f"/api/blobs/{wrong}", b"some bytes that do not hash to that")
    assert status == 400 and "digest mismatch" in json.loads(body)["error"]
    assert raw(mesh, "HEAD", f"/api/blobs/{wrong}")[0] == 404
    assert list((mesh.models / ".blobs").iterdir()) == [], "the partial upload was deleted"
    status, body = raw(mesh, "POST", "/api/blobs/sha256:xyz", b"x")
    assert status == 400 and "invalid digest" in json.loads(body)["error"]
    assert raw(mesh, "HEAD", "/api/blobs/not-a-digest")[0] == 400


def test_a_blob_larger_than_the_request_limit_is_accepted(mesh, digest):
    """Uploads are whole models: the blob route has no body limit but the disk's (other routes keep theirs)."""
    big = b"\0" * (3 << 20)
    d = "sha256:" + hashlib.sha256(big).hexdigest()
    assert raw(mesh, "POST", f"/api/blobs/{d}", big)[0] == 201
    status, _ = raw(mesh, "POST", "/api/chat", big, {"Content-Type": "application/json"})
    assert status == 413


# --- copy -----------------------------------------------------------------------------------------------

def test_copy_makes_a_second_name_for_the_same_file(mesh):
    client(mesh).copy("smol", "smol-copy")
    e = entries(mesh)
    assert e["smol-copy"]["model_path"] == e["smol"]["model_path"] and e["smol-copy"]["parameters"] == e["smol"]["parameters"]
    assert client(mesh).chat(model="smol-copy", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 2}).message is not None
    # A copy of another tool's model becomes a model of ours over that file.
    client(mesh).copy("pub/Repo-GGUF/cached-Q4_K_M.gguf", "cached")
    assert os.path.samefile(entries(mesh)["cached"]["model_path"], str(mesh.lms / "pub" / "Repo-GGUF" / "cached-Q4_K_M.gguf"))
    assert error_of(lambda: client(mesh).copy("no-such", "x")).status_code == 404
    # Deleting the copy leaves the original and its file.
    client(mesh).delete("smol-copy")
    client(mesh).delete("cached")
    assert "smol" in names(mesh) and os.path.exists(MODEL)
    assert (mesh.lms / "pub" / "Repo-GGUF" / "cached-Q4_K_M.gguf").exists()


# --- delete ---------------------------------------------------------------------------------------------

def test_delete_removes_a_pulled_model_and_its_file_but_not_a_file_another_name_uses(mesh):
    name = f"hf.co/{REPO}"
    assert client(mesh).pull(name).status == "success"
    path = mesh.models / REPO / FILE
    assert path.exists()
    client(mesh).copy(name, "pulled-copy")
    client(mesh).delete(name)
    assert path.exists(), "the copy still uses the file"
    assert name not in names(mesh)
    client(mesh).delete("pulled-copy")
    assert not path.exists(), "the last name of a downloaded file deletes it"
    assert "pulled-copy" not in names(mesh)


def test_delete_of_a_loaded_model_unloads_it(mesh):
    client(mesh).create("doomed", from_="smol", parameters={"num_ctx": 512})
    client(mesh).generate(model="doomed", prompt="hi", options={"num_predict": 1})
    assert "doomed" in [p.model.removesuffix(":latest") for p in client(mesh).ps().models]
    client(mesh).delete("doomed")
    def running():
        return [r["model"] for r in rpc(mesh, "runners.sock", "runners.list") if r["state"] != "stopped"]
    deadline = time.time() + 30
    while "doomed" in running() and time.time() < deadline:
        time.sleep(0.1)
    assert "doomed" not in running()


def test_delete_never_removes_the_users_file_or_another_tools_cache(mesh):
    mine = mesh.models / "mine.gguf"
    cached = mesh.lms / "pub" / "Repo-GGUF" / "cached-Q4_K_M.gguf"
    e = error_of(lambda: client(mesh).delete("mine"))
    assert e.status_code == 403 and "delete the file yourself" in e.error
    e = error_of(lambda: client(mesh).delete("pub/Repo-GGUF/cached-Q4_K_M.gguf"))
    assert e.status_code == 403 and "LM Studio" in e.error
    assert mine.exists() and cached.exists()
    assert "mine" in names(mesh) and "pub/Repo-GGUF/cached-Q4_K_M.gguf" in names(mesh)
    assert error_of(lambda: client(mesh).delete("no-such-model")).status_code == 404
    # A model configured by hand over the user's file: the entry goes, the file stays.
    client(mesh).delete("smol")
    assert "smol" not in names(mesh) and os.path.exists(MODEL)
