"""Scheduling end to end with the real mesh and llama-server: pinned and preloaded models, the resident
model, abandoned loads, and the batch policy's preference for a loaded model. Each test has a small
mesh of its own over the demo model (different context sizes make different runners)."""
import concurrent.futures
import os
import socket
import threading
import time

import httpx
import ollama
import pytest

from conftest import MODEL, rpc, start_mesh, stop_mesh


def runners(m):
    return {r["model"]: r for r in rpc(m, "runners.sock", "runners.list")}


def wait_for(predicate, timeout, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; so is one reaped between the kill and the read.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def chat(m, model, port=None, timeout=120, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}
    body.update(extra)
    r = httpx.post(f"{m.url(port or m.lmstudio)}/v1/chat/completions", json=body, timeout=timeout)
    return r


@pytest.fixture
def pinned_mesh():
    m = start_mesh({"limits": {"max_loaded_models": 2}}, {"models": {
        "keep": {"model_path": MODEL, "parameters": {"ctx_size": 512}, "pinned": True, "preload": True},
        "a": {"model_path": MODEL, "parameters": {"ctx_size": 768}},
        "b": {"model_path": MODEL, "parameters": {"ctx_size": 1024}},
    }})
    yield m
    stop_mesh(m)


def test_a_preloaded_pinned_model_is_ready_before_any_request_and_never_evicted(pinned_mesh):
    m = pinned_mesh
    keep = wait_for(lambda: runners(m).get("keep", {}).get("state") == "ready" and runners(m)["keep"], 60)
    assert keep, f"the preloaded model did not load by itself: {runners(m)}"
    pid = keep["pid"]
    # a, then b: only one of them fits beside the pinned model, so b evicts a, never keep.
    assert chat(m, "a").status_code == 200
    assert chat(m, "b").status_code == 200
    now = runners(m)
    assert now["keep"]["state"] == "ready" and now["keep"]["pid"] == pid
    assert now["b"]["state"] == "ready"
    assert wait_for(lambda: runners(m).get("a", {}).get("state") in ("stopped", None), 30), runners(m)


def test_a_preloaded_model_comes_back_after_kill_9_of_its_runner(pinned_mesh):
    m = pinned_mesh
    keep = wait_for(lambda: runners(m).get("keep", {}).get("state") == "ready" and runners(m)["keep"], 60)
    old = keep["pid"]
    os.kill(old, 9)
    back = wait_for(lambda: (r := runners(m).get("keep", {})).get("state") == "ready" and r.get("pid") != old and r, 60)
    assert back, f"the preloaded model was not started again: {runners(m)}"
    assert not alive(old)


def test_ollama_keep_alive_minus_one_pins_until_unloaded(pinned_mesh):
    m = pinned_mesh
    wait_for(lambda: runners(m).get("keep", {}).get("state") == "ready", 60)
    client = ollama.Client(host=m.url(m.ollama))
    client.generate(model="a", prompt="hi", keep_alive=-1, options={"num_predict": 2})
    # keep and a are both pinned now: b cannot fit, and the refusal says why.
    r = chat(m, "b")
    assert r.status_code == 503, r.text
    message = r.json()["error"]["message"]
    assert "pinned models a, keep" in message and "max_loaded_models 2" in message, message
    # Unloading a (keep_alive 0) un-pins it, and b loads.
    client.generate(model="a", prompt="", keep_alive=0)
    assert wait_for(lambda: runners(m).get("a", {}).get("state") in ("stopped", None), 30)
    assert chat(m, "b").status_code == 200


def test_the_resident_model_returns_once_the_machine_is_idle():
    m = start_mesh({"limits": {"max_loaded_models": 1, "resident_idle_seconds": 2}, "resident_model": "home"}, {"models": {
        "home": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
        "away": {"model_path": MODEL, "parameters": {"ctx_size": 768}},
    }})
    try:
        assert wait_for(lambda: runners(m).get("home", {}).get("state") == "ready", 60), "the resident model was not loaded at start"
        assert chat(m, "away").status_code == 200
        assert runners(m).get("home", {}).get("state") in ("stopped", None), "away displaced home (one slot)"
        done = time.time()
        assert wait_for(lambda: runners(m).get("home", {}).get("state") == "ready", 30), runners(m)
        back_after = time.time() - done
        assert back_after >= 1.5, f"home came back {back_after:.1f} s after the last request, before the 2 s of idleness"
        assert runners(m).get("away", {}).get("state") in ("stopped", None)
    finally:
        stop_mesh(m)


def test_an_abandoned_load_is_stopped_when_another_model_waits_for_its_room():
    m = start_mesh({"limits": {"max_loaded_models": 1}}, {"models": {
        # A large context makes a's load long enough to abandon (its KV cache is allocated and cleared
        # at load: about 0.8 s here against 0.3 s).
        "a": {"model_path": MODEL, "parameters": {"ctx_size": 32768, "parallel": 8}},
        "b": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
    }})
    try:
        # A client asks for a and hangs up as soon as a is loading.
        s = socket.create_connection(("127.0.0.1", m.lmstudio))
        body = b'{"model":"a","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        loading = wait_for(lambda: (r := runners(m).get("a", {})).get("state") in ("starting", "loading") and r.get("pid") and r, 30, step=0.005)
        assert loading, runners(m)
        pid = loading["pid"]
        # b waits for the slot a's load holds; then a's only client leaves.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(chat, m, "b")
            time.sleep(0.02)
            s.close()
            assert waiting.result(timeout=120).status_code == 200
        assert not alive(pid), "the abandoned load's runner is still running"
        assert runners(m)["a"]["state"] in ("stopped",), runners(m)["a"]
        log = open(os.path.join(m.state, "logs", "runner-manager.log")).read()
        assert "reason=abandoned" in log, "a's load was not stopped as abandoned: " + log[-1500:]
        # It was stopped on purpose, not counted as a crash: a loads again at once.
        assert chat(m, "a").status_code == 200
    finally:
        stop_mesh(m)


def test_batch_serves_the_loaded_models_queue_and_bounds_the_wait_fifo_swaps():
    """Three clients keep model a busy; one asks for b. With batch and max_wait 3 s, b waits about
    3 s (not for ever, not zero) while a's clients go on; with fifo, b's request swaps at once."""
    results = {}
    for policy in ("batch", "fifo"):
        m = start_mesh({"limits": {"max_loaded_models": 1, "swap_policy": policy, "max_wait_seconds": 3}}, {"models": {
            "a": {"model_path": MODEL, "parameters": {"ctx_size": 512, "parallel": 2}},
            "b": {"model_path": MODEL, "parameters": {"ctx_size": 768}},
        }})
        try:
            assert chat(m, "a").status_code == 200
            stop = threading.Event()
            served = []

            def client():
                while not stop.is_set():
                    r = chat(m, "a", max_tokens=24)
                    served.append((time.time(), r.status_code))

            threads = [threading.Thread(target=client) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            started = time.time()
            r = chat(m, "b")
            waited = time.time() - started
            stop.set()
            for t in threads:
                t.join(timeout=120)
            assert r.status_code == 200, r.text
            assert all(code == 200 for _, code in served)
            results[policy] = (waited, len([t for t, _ in served if started <= t <= started + waited]))
        finally:
            stop_mesh(m)
    print(f"\nb waited {results['batch'][0]:.2f} s with batch ({results['batch'][1]} a requests served meanwhile), "
          f"{results['fifo'][0]:.2f} s with fifo ({results['fifo'][1]})")
    batch_wait, batch_served = results["batch"]
    fifo_wait, fifo_served = results["fifo"]
    assert 2.5 <= batch_wait <= 3 + 5, f"batch: b waited {batch_wait:.2f} s (max_wait 3 s plus a drain and a swap)"
    assert batch_served > fifo_served, f"batch served a's queue meanwhile ({batch_served} vs {fifo_served} with fifo)"
    assert fifo_wait < batch_wait - 1.5, f"fifo swapped at once ({fifo_wait:.2f} s vs {batch_wait:.2f} s)"
