"""A whole Llama Runner for the compatibility tests: `launcher up` from the release build (what `make up`
runs, so optimiser-only faults show here; the Swift suites cover the debug build) on free ports
and a temporary state directory, serving the demo model with the real llama-server."""
import json, os, shutil, signal, subprocess, sys, tempfile, time, urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts"))
import benchlib  # noqa: E402  (the scripts' shared helpers: paths, free ports, one RPC call)
from benchlib import MODEL, ROOT, free_ports  # noqa: E402,F401  (re-exported to the tests)


def bin_dir():
    return subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


class Mesh:
    def __init__(self, ports, work, process):
        self.ollama, self.lmstudio, self.api, self.web = ports
        self.work = work
        self.process = process

    def url(self, port):
        return f"http://127.0.0.1:{port}"


def start_mesh(app_extra, models):
    assert os.path.exists(MODEL), "the demo model is missing: run scripts/bootstrap.sh"
    work = tempfile.mkdtemp(prefix="lr-compat-")
    ports = free_ports(4)
    config = os.path.join(work, "config")
    os.makedirs(config)
    app = {"proxies": {"ollama": {"port": ports[0]}, "lmstudio": {"port": ports[1]}},
           "dashboard": {"api_port": ports[2], "web_port": ports[3]},
           "paths": {"models_dirs": []}, "discovery_interval_seconds": 0}
    for key, value in app_extra.items():
        if isinstance(value, dict):
            for k, v in value.items():
                app.setdefault(key, {}).setdefault(k, {}).update(v) if isinstance(v, dict) else app.setdefault(key, {}).update({k: v})
        else:
            app[key] = value
    json.dump(app, open(os.path.join(config, "app_config.json"), "w"))
    json.dump(models, open(os.path.join(config, "models_config.json"), "w"))
    process = subprocess.Popen([os.path.join(bin_dir(), "launcher"), "up", "--state-dir", os.path.join(work, "state"),
                                "--config-dir", config], stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "launcher.err"), "w"))
    m = Mesh(ports, work, process)
    m.state = os.path.join(work, "state")
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(m.url(m.api) + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError("the mesh did not come up: " + open(os.path.join(work, "launcher.err")).read()[-2000:])
            time.sleep(0.1)
    # /health answers once the gateway serves; the launcher counts the start done a moment later, and a
    # test that kills a service before then would stop the whole start.
    while not all(s["state"] == "running" for s in benchlib.rpc(os.path.join(m.state, "run", "launcher.sock"), "launcher.status")["services"]):
        if time.time() > deadline:
            raise RuntimeError("the launcher did not finish starting")
        time.sleep(0.02)
    return m


def stop_mesh(m):
    m.process.send_signal(signal.SIGINT)
    assert m.process.wait(timeout=60) == 0
    shutil.rmtree(m.work, ignore_errors=True)


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
