"""A whole Llama Runner for the compatibility tests: `launcher up` from the debug build on free ports
and a temporary state directory, serving the demo model with the real llama-server."""
import json, os, shutil, signal, socket, subprocess, tempfile, time, urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def bin_dir():
    return subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


class Mesh:
    def __init__(self, ports, work, process):
        self.ollama, self.lmstudio, self.api, self.web = ports
        self.work = work
        self.process = process

    def url(self, port):
        return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def mesh():
    assert os.path.exists(MODEL), "the demo model is missing: run scripts/bootstrap.sh"
    work = tempfile.mkdtemp(prefix="lr-compat-")
    ports = free_ports(4)
    config = os.path.join(work, "config")
    os.makedirs(config)
    json.dump({"proxies": {"ollama": {"port": ports[0]}, "lmstudio": {"port": ports[1]}},
               "dashboard": {"api_port": ports[2], "web_port": ports[3]},
               "paths": {"models_dirs": []}, "discovery_interval_seconds": 0,
               "limits": {"max_loaded_models": 3}}, open(os.path.join(config, "app_config.json"), "w"))
    json.dump({"default_model": "smol", "models": {
        "smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048}, "aliases": ["smol-alias"]},
        "smol-embed": {"model_path": MODEL, "parameters": {"ctx_size": 512, "embeddings": True, "pooling": "mean"}, "kind": "embedding"},
    }}, open(os.path.join(config, "models_config.json"), "w"))
    process = subprocess.Popen([os.path.join(bin_dir(), "launcher"), "up", "--state-dir", os.path.join(work, "state"),
                                "--config-dir", config], stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "launcher.err"), "w"))
    m = Mesh(ports, work, process)
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
    yield m
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    shutil.rmtree(work, ignore_errors=True)
