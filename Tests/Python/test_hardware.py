"""The device inventory end to end (issue 20's first part), with what a GPU cannot be made to produce here on
demand: a fake `nvidia-smi` on the services' PATH (two NVIDIA GPUs) and a fixture sysfs tree (one AMD GPU) named
by `hardware.sysfs_root`. runner-manager samples them off its loop; `runners.hardware`, the dashboard API's
`GET /api/hardware` and the Prometheus output show them; a machine without a GPU lists only the CPU."""
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from conftest import rpc, start_mesh, stop_mesh
from fakedevices import amd_card

RTX4090 = "GPU-5a1b2c3d-0000-1111-2222-333344445555"
RTX3060 = "GPU-9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"
QUERY = "index,uuid,name,pci.bus_id,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu,power.draw"


def fake_nvidia_smi(folder, used_file):
    """Answers the exact query runner-manager makes; the first GPU's used MiB comes from `used_file`, so the test
    can change it between samples."""
    path = os.path.join(folder, "nvidia-smi")
    with open(path, "w") as f:
        f.write(f"""#!/bin/sh
case "$1" in
  --query-gpu={QUERY})
    used=$(cat {used_file})
    echo "0, {RTX4090}, NVIDIA GeForce RTX 4090, 00000000:01:00.0, 24564, $used, $((24564 - used)), 12, 44, 61.25"
    echo "1, {RTX3060}, NVIDIA GeForce RTX 3060, 00000000:2B:00.0, 12288, 300, 11988, [N/A], 37, [N/A]"
    ;;
  --query-compute-apps=*) ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
""")
    os.chmod(path, 0o755)


@pytest.fixture
def gpus(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    used = tmp_path / "used"
    used.write_text("1200")
    fake_nvidia_smi(str(tools), str(used))
    sysfs = tmp_path / "sys"
    amd_card(str(sysfs), 0, "0000:0c:00.0", 16368, 2048)
    m = start_mesh({"hardware": {"nvml": False, "sysfs_root": str(sysfs), "sample_interval_seconds": 0.5}}, {"models": {}},
                   env={"PATH": f"{tools}:{os.environ['PATH']}"})
    m.used = used
    yield m
    stop_mesh(m)


def get(m, path):
    with urllib.request.urlopen(m.url(m.api) + path, timeout=10) as r:
        return r.read().decode()


def test_every_gpu_and_the_cpu_are_listed_by_id_with_their_figures(gpus):
    info = rpc(gpus, "runners.sock", "runners.hardware")
    assert [d["id"] for d in info["devices"]] == ["0000:0c:00.0", RTX4090, RTX3060, "cpu"], info
    assert info["problems"] == []
    amd, big, small, cpu = info["devices"]
    assert amd["kind"] == "amd" and amd["totalBytes"] == 16368 << 20 and amd["usedBytes"] == 2048 << 20 and amd["temperatureCelsius"] == 52
    assert big["kind"] == "nvidia" and big["name"] == "NVIDIA GeForce RTX 4090" and big["pciBusId"] == "0000:01:00.0" and big["index"] == 0
    assert big["totalBytes"] == 24564 << 20 and big["freeBytes"] == (24564 - 1200) << 20 and big["powerWatts"] == 61.25
    assert big["source"] == "nvidia-smi" and "utilizationPercent" not in small and "powerWatts" not in small
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    assert cpu["kind"] == "cpu" and cpu["totalBytes"] == int(meminfo["MemTotal"].split()[0]) * 1024
    # The dashboard API answers the same sample.
    assert [d["id"] for d in json.loads(get(gpus, "/api/hardware"))["devices"]] == [d["id"] for d in info["devices"]]


def test_samples_follow_the_device_and_prometheus_exports_them(gpus):
    gpus.used.write_text("20000")
    deadline = time.time() + 10
    while rpc(gpus, "runners.sock", "runners.hardware")["devices"][1]["usedBytes"] != 20000 << 20:
        assert time.time() < deadline, "the inventory did not sample again"
        time.sleep(0.1)
    want = [f'llama_runner_gpu_memory_bytes{{device="{RTX4090}",kind="free",name="NVIDIA GeForce RTX 4090"}} {(24564 - 20000) << 20}',
            f'llama_runner_gpu_memory_bytes{{device="{RTX3060}",kind="total",name="NVIDIA GeForce RTX 3060"}} {12288 << 20}',
            'llama_runner_gpu_memory_bytes{device="0000:0c:00.0",kind="used",name="AMD GPU 0x73bf"}',
            f'llama_runner_gpu_temperature_celsius{{device="{RTX4090}",name="NVIDIA GeForce RTX 4090"}} 44',
            f'llama_runner_gpu_power_watts{{device="{RTX4090}",name="NVIDIA GeForce RTX 4090"}} 61.25']
    deadline = time.time() + 10
    while True:
        text = get(gpus, "/metrics")
        if all(w in text for w in want) or time.time() > deadline:
            break
        time.sleep(0.5)
    for w in want:
        assert w in text, w
    assert f'llama_runner_gpu_power_watts{{device="{RTX3060}"' not in text, "an unsupported reading is left out, not 0"
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test.sh installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_no_gpu_is_the_cpu_alone_and_a_broken_tool_is_reported(tmp_path):
    m = start_mesh({"hardware": {"nvml": False, "nvidia_smi": "", "sysfs_root": str(tmp_path)}}, {"models": {}})
    try:
        info = rpc(m, "runners.sock", "runners.hardware")
        assert [d["id"] for d in info["devices"]] == ["cpu"] and info["problems"] == []
    finally:
        stop_mesh(m)
    broken = tmp_path / "nvidia-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'\nexit 9\n")
    broken.chmod(0o755)
    m = start_mesh({"hardware": {"nvml": False, "nvidia_smi": str(broken), "sysfs_root": str(tmp_path)}}, {"models": {}})
    try:
        info = rpc(m, "runners.sock", "runners.hardware")
        assert [d["id"] for d in info["devices"]] == ["cpu"]
        assert len(info["problems"]) == 1 and "could not communicate" in info["problems"][0], info
    finally:
        stop_mesh(m)


def test_a_loaded_runner_reports_llama_servers_own_buffer_sizes_and_they_match_proc(tmp_path):
    """The real CPU path: the demo model loaded by the real llama-server; runner-manager reads the buffer sizes it
    logs (model, KV, output, compute). Tolerance: the process's resident memory is at least those buffers (the
    mapped weights are all touched by the warm-up) and at most 96 MiB more (the binary, its libraries, the heap)."""
    from conftest import MODEL
    m = start_mesh({}, {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048}}}})
    try:
        rpc(m, "runners.sock", "runners.load", {"model": "smol"})
        runner = next(r for r in rpc(m, "runners.sock", "runners.list") if r["model"] == "smol")
        measured = runner["measuredMemory"]
        assert set(measured["devices"]) == {"CPU"}, measured
        kinds = measured["kinds"]
        assert set(kinds) >= {"model", "KV", "compute"}, kinds
        # 2048 cells × 30 layers × 3 KV heads × 64 × 2 (K and V) × 2 bytes = 45 MiB, as the estimate computes it.
        assert kinds["KV"] == 2048 * 30 * 3 * 64 * 2 * 2
        assert abs(kinds["model"] - 96_576_768) < 1 << 20, "the model buffer is the file's tensor data"
        total = sum(measured["devices"].values())
        with open(f"/proc/{runner['pid']}/status") as f:
            rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        assert total <= rss <= total + (96 << 20), (total, rss)
        with urllib.request.urlopen(m.url(m.ollama) + "/api/ps", timeout=10) as r:
            ps = json.loads(r.read())["models"][0]
        assert ps["size"] == total and ps["size_vram"] == 0
    finally:
        stop_mesh(m)


def runner_of(m, model):
    return next(r for r in rpc(m, "runners.sock", "runners.list") if r["model"] == model)


def environ_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(item.split("=", 1) for item in f.read().decode().split("\0") if "=" in item)


def wait_sample(m, gpu, free_mib):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        devices = {d["id"]: d for d in rpc(m, "runners.sock", "runners.hardware")["devices"]}
        if devices[gpu]["freeBytes"] == free_mib << 20:
            return
        time.sleep(0.2)
    raise AssertionError(f"{gpu} never showed {free_mib} MiB free")


def test_a_model_goes_to_the_gpu_with_the_most_free_memory_and_sees_only_it(tmp_path):
    """Placement with the fake nvidia-smi's two GPUs, run by the real llama-server (a CPU build: it ignores the
    CUDA variables, which is why a fake GPU can be used at all). The runner's own environment (/proc/PID/environ)
    names the chosen GPU; when the 4090 fills up, the next model goes to the 3060; an entry's `devices` wins, and
    a device that is not there is a precise error."""
    from conftest import MODEL
    tools = tmp_path / "bin"
    tools.mkdir()
    used = tmp_path / "used"
    used.write_text("1200")
    fake_nvidia_smi(str(tools), str(used))
    models = {"models": {
        "first": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
        "second": {"model_path": MODEL, "parameters": {"ctx_size": 512, "parallel": 2}},
        "named": {"model_path": MODEL, "parameters": {"ctx_size": 512, "parallel": 3}, "devices": ["00000000:2b:00.0"]},
        "absent": {"model_path": MODEL, "devices": ["GPU-00000000-dead-beef-0000-000000000000"]},
    }}
    m = start_mesh({"limits": {"max_loaded_models": 3}, "hardware": {"nvml": False, "sysfs_root": str(tmp_path), "sample_interval_seconds": 0.3}},
                   models, env={"PATH": f"{tools}:{os.environ['PATH']}"})
    try:
        rpc(m, "runners.sock", "runners.load", {"model": "first"})
        first = runner_of(m, "first")
        assert first["devices"] == [RTX4090], first
        env = environ_of(first["pid"])
        assert env["CUDA_VISIBLE_DEVICES"] == RTX4090 and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        # Once ready, what the scheduler counts is what llama-server reported (a CPU build: all of it on the CPU).
        assert set(first["memoryByDevice"]) == {"cpu"} and first["memoryByDevice"]["cpu"] >= sum(first["measuredMemory"]["devices"].values())

        used.write_text("20000")  # 4564 MiB free on the 4090 now, 11988 on the 3060
        wait_sample(m, RTX4090, 24564 - 20000)
        rpc(m, "runners.sock", "runners.load", {"model": "second"})
        second = runner_of(m, "second")
        assert second["devices"] == [RTX3060] and environ_of(second["pid"])["CUDA_VISIBLE_DEVICES"] == RTX3060, second

        used.write_text("1200")
        wait_sample(m, RTX4090, 24564 - 1200)
        rpc(m, "runners.sock", "runners.load", {"model": "named"})
        assert runner_of(m, "named")["devices"] == [RTX3060], "the entry's PCI address, whatever is freer"

        with pytest.raises(RuntimeError) as refused:
            rpc(m, "runners.sock", "runners.load", {"model": "absent"})
        text = str(refused.value)
        assert "model absent names device GPU-00000000-dead-beef-0000-000000000000" in text and RTX4090 in text, text
    finally:
        stop_mesh(m)


def test_a_load_that_runs_out_of_memory_walks_the_ladder_on_the_real_llama_server(tmp_path):
    """A real out-of-memory failure, not a recorded one: a context of 2M tokens asks llama-server for 45 GiB of KV
    cache, which the kernel refuses on this 24 GB machine. The ladder sizes a smaller context from the room the
    budget leaves (limits.memory_budget: 1 GiB) and the load succeeds; without min_ctx_size below the context, the
    precise error comes back instead, naming the model, the device, what it needs and what is free."""
    from conftest import MODEL
    big = 2_097_152
    m = start_mesh({"limits": {"memory_budget": 1 << 30, "max_loaded_models": 2},
                    "proxies": {"ollama": {"stream_loading_progress": True}}}, {"models": {
        "shrinks": {"model_path": MODEL, "parameters": {"ctx_size": big, "parallel": 1}, "min_ctx_size": 4096},
        "stuck": {"model_path": MODEL, "parameters": {"ctx_size": big, "parallel": 1}},
    }})
    try:
        # The waiting client sees the ladder's step in its own stream (Ollama's `thinking`), then the answer.
        with urllib.request.urlopen(urllib.request.Request(
                m.url(m.ollama) + "/api/chat", data=json.dumps({"model": "shrinks", "messages": [{"role": "user", "content": "Hi"}],
                                                                 "options": {"num_predict": 4}}).encode(),
                headers={"Content-Type": "application/json"}), timeout=120) as resp:
            lines = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
        thinking = "".join(line["message"].get("thinking", "") for line in lines)
        r = runner_of(m, "shrinks")
        assert f"shrinks: out of memory on system memory" in thinking and f"trying a context of {r['contextLength']} tokens" in thinking, thinking
        assert lines[-1]["done"] is True and "error" not in lines[-1], lines[-3:]
        assert r["state"] == "ready", r
        context = r["contextLength"]
        assert 4096 <= context < big and context % 256 == 0, r
        print(f"ladder: context {big} -> {context} tokens; measured {sum(r['measuredMemory']['devices'].values()) >> 20} MiB")
        # What it holds fits the budget it was sized for.
        assert sum(r["measuredMemory"]["devices"].values()) <= 1 << 30, r
        with open(os.path.join(m.state, "logs", "runner-manager.log")) as f:
            log = f.read()
        assert "loading shrinks: out of memory on system memory" in log and f"trying a context of {context} tokens instead of {big}" in log, log[-3000:]
        lines = rpc(m, "runners.sock", "runners.logs", {"model": "shrinks", "tail": 500})
        assert any(f"n_ctx                 = {context}" in line or f"n_ctx = {context}" in line for line in lines), lines[-40:]
        # It answers.
        with urllib.request.urlopen(urllib.request.Request(
                m.url(m.ollama) + "/api/generate", data=json.dumps({"model": "shrinks", "prompt": "Hi", "stream": False,
                                                                     "options": {"num_predict": 4}}).encode(),
                headers={"Content-Type": "application/json"}), timeout=60) as resp:
            assert json.loads(resp.read())["done"] is True

        rpc(m, "runners.sock", "runners.unload", {"model": "shrinks"})
        with pytest.raises(RuntimeError) as failed:
            rpc(m, "runners.sock", "runners.load", {"model": "stuck"})
        text = str(failed.value)
        assert "model stuck ran out of memory on system memory: it needs about 4" in text and "GB is free for it" in text, text
        assert "set min_ctx_size to let its context shrink" in text, text
        assert runner_of(m, "stuck")["state"] == "failed"
    finally:
        stop_mesh(m)
