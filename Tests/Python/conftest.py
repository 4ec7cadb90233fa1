"""A whole Llama Runner for the compatibility tests: `launcher up` from the release build (what `make up`
runs, so optimiser-only faults show here; the Swift suites cover the debug build) on free ports
and a temporary state directory, serving the demo model with the real llama-server."""
import json, os, sys, urllib.error, urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts"))
import benchlib  # noqa: E402  (the scripts' shared helpers: paths, free ports, one RPC call)
from benchlib import MODEL, ROOT, free_ports  # noqa: E402,F401  (re-exported to the tests)


def bin_dir():
    return benchlib.release_bin_dir()


def start_mesh(app_extra, models, env=None, netns=None, wrap=None):
    """A whole Llama Runner (benchlib.Mesh, shared with the benchmarks) serving `models`; `env` is added
    to its services' environment; `netns` runs it inside that network namespace (a simulated host);
    `wrap` is a command that execs it (e.g. in a private mount namespace)."""
    assert os.path.exists(MODEL), "the demo model is missing: run scripts/bootstrap.sh"
    return benchlib.Mesh("lr-compat-", app_extra, models, bindir=bin_dir(), env=env, netns=netns, wrap=wrap)


def call_json(method, url, body=None, headers=None, timeout=120):
    """One JSON request: (status, decoded body), an error status included."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def stop_mesh(m):
    m.stop(check=True)


def rpc(m, service_socket, method, params=None):
    """A JSON-RPC call to one of the mesh's services (e.g. runners.sock)."""
    return benchlib.rpc(os.path.join(m.state, "run", service_socket), method, params, timeout=120)


@pytest.fixture(scope="session")
def mesh():
    m = start_mesh({"limits": {"max_loaded_models": 3}}, {"default_model": "smol", "models": {
        "smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048}, "aliases": ["smol-alias"]},
        "smol-embed": {"model_path": MODEL, "parameters": {"ctx_size": 512, "embeddings": True, "pooling": "mean"}, "kind": "embedding"},
    }})
    yield m
    stop_mesh(m)


@pytest.fixture(scope="session")
def strict_mesh():
    """One model slot, and an API key on the LM Studio surface."""
    m = start_mesh({"limits": {"max_loaded_models": 1, "request_body_bytes": 65536}, "proxies": {"lmstudio": {"api_keys": ["sk-test-key"]}},
                    "allowed_hosts": ["llm.test"],
                    "dashboard": {"admin_token": "admin-secret"}}, {"models": {
        "smol-a": {"model_path": MODEL, "parameters": {"ctx_size": 1024}},
        "smol-b": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
    }})
    yield m
    stop_mesh(m)


def demo_model_at(dst):
    """The demo model at `dst` without copying 98 MB: a hard link (a copy where that fails)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(MODEL, dst)
    except OSError:
        import shutil
        shutil.copyfile(MODEL, dst)


def sha256_of(path):
    """The file's SHA-256, hex, read in 1 MiB blocks."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wait_for(what, check, timeout=30, every=0.05):
    """`check()`'s first truthy value, polled every `every` s; fails naming `what` after `timeout` s."""
    import time
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
