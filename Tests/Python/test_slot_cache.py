"""Conversations survive a swap: a runner's slots are saved when it is evicted and restored when its
model loads again, so llama-server's own prompt cache covers the next turn (`timings.cache_n`). Real
mesh, real llama-server, one model slot."""
import glob
import os
import time

import httpx
import pytest

from conftest import MODEL, rpc, start_mesh, stop_mesh

WORDS = ("the river carried old boats past quiet towns where bakers opened early and children counted clouds "
         "while a lighthouse keeper wrote letters about storms tides gulls and distant ships").split()
# About 1,000 tokens of a system prompt, the same on every turn.
SYSTEM = " ".join(WORDS[i % len(WORDS)] for i in range(920))


@pytest.fixture(scope="module")
def slot_mesh():
    m = start_mesh({"limits": {"max_loaded_models": 1}}, {"models": {
        "talk": {"model_path": MODEL, "parameters": {"ctx_size": 4096}},
        "other": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
    }})
    yield m
    stop_mesh(m)


def chat(m, model, messages, max_tokens=8):
    r = httpx.post(f"{m.url(m.lmstudio)}/v1/chat/completions", timeout=300,
                   json={"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()


def runner(m, model):
    return next((r for r in rpc(m, "runners.sock", "runners.list") if r["model"] == model), {})


def slot_files(m, model):
    return sorted(glob.glob(os.path.join(m.state, "slots", f"{model}@*.bin")))


def test_the_follow_up_after_a_swap_reuses_the_restored_conversation(slot_mesh):
    m = slot_mesh
    turn = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What did the keeper write about?"}]
    first = chat(m, "talk", turn)
    prompt = first["usage"]["prompt_tokens"]
    assert prompt > 900, prompt
    # Another model takes the only slot: talk is evicted, and its conversation saved.
    chat(m, "other", [{"role": "user", "content": "hi"}])
    assert runner(m, "talk")["state"] in ("stopped", None)
    counts = runner(m, "talk")["slotCache"]
    assert counts["saves"] >= 1 and counts["savedTokens"] >= prompt, counts
    assert slot_files(m, "talk"), "no slot file was written"
    # The follow-up: the same conversation one turn further, on a fresh runner.
    follow = turn + [first["choices"][0]["message"], {"role": "user", "content": "And what about the boats?"}]
    second = chat(m, "talk", follow)
    assert runner(m, "talk")["slotCache"]["restores"] >= 1
    cached = second["timings"]["cache_n"]
    assert cached >= prompt - 8, f"the follow-up reused {cached} tokens of a {prompt}-token conversation"


def test_a_corrupt_or_stale_slot_file_is_ignored_and_the_load_succeeds(slot_mesh):
    m = slot_mesh
    chat(m, "talk", [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello?"}])
    chat(m, "other", [{"role": "user", "content": "hi"}])  # talk saved
    files = slot_files(m, "talk")
    assert files
    for path in files:
        with open(path, "r+b") as f:
            f.seek(0)
            f.write(b"\x00garbage" * 64)
    stale = os.path.join(m.state, "slots", "talk@0123456789abcdef.s0.bin")  # other load arguments
    open(stale, "wb").write(b"old")
    failures = runner(m, "talk")["slotCache"]["restoreFailures"]
    reply = chat(m, "talk", [{"role": "user", "content": "Still there?"}])
    assert reply["choices"][0]["message"]["content"] is not None
    assert runner(m, "talk")["slotCache"]["restoreFailures"] > failures
    assert not os.path.exists(stale), "a file of other load arguments was kept"
    for path in files:
        assert not os.path.exists(path), "a file that did not restore was kept"
    log = open(os.path.join(m.state, "logs", "runner-manager.log")).read()
    assert "slot restore failed for talk, ignored" in log
    # The failure is counted in the metrics too.
    deadline = time.time() + 10
    text = ""
    while time.time() < deadline:
        text = httpx.get(f"{m.url(m.api)}/metrics").text
        if 'llama_runner_slot_cache_operations_total{model="talk",operation="restore",outcome="failed"}' in text:
            break
        time.sleep(0.5)
    assert 'llama_runner_slot_cache_operations_total{model="talk",operation="restore",outcome="failed"}' in text, text[-2000:]
