"""LM Studio's official Python SDK (`lmstudio` 1.5.0 from PyPI), sync and async, against the real gateway,
runner-manager and llama-server on the LM Studio port: the websocket protocol every LM Studio SDK speaks."""
import asyncio
import json
import os
import stat
import subprocess
import time
import urllib.request

import lmstudio as lms
import pytest
import websockets
import websockets.sync.client as wsclient

from conftest import MODEL, ROOT, rpc, start_mesh, stop_mesh

TOKEN = "sk-lm-Abc12345:abcdefghij0123456789"

# As in the SDK's own live tests: a packet the SDK does not recognise fails the test.
pytestmark = pytest.mark.filterwarnings("error::lmstudio.json_api.LMStudioUnknownMessageWarning")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A chat model, an embedding model, and one whose runtime is the real llama-server started 5 s late
    (a wrapper script), for a load longer than the client's patience."""
    real = subprocess.run([os.path.join(ROOT, "scripts", "install_llama_server.sh")], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]
    wrapper = tmp_path_factory.mktemp("slow") / "slow-llama-server"
    wrapper.write_text(f"#!/bin/sh\nsleep 5\nexec {real} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    m = start_mesh({"limits": {"max_loaded_models": 3}, "runtimes": {"llama-server": {"kind": "llama-server", "path": real},
                                                                      "slow": {"kind": "llama-server", "path": str(wrapper)}}},
                   {"default_model": "smol", "models": {
        "smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048}},
        "smol-embed": {"model_path": MODEL, "parameters": {"ctx_size": 512, "embeddings": True, "pooling": "mean"}, "kind": "embedding"},
        "smol-slow": {"model_path": MODEL, "llama_cpp_runtime": "slow", "parameters": {"ctx_size": 256}},
    }})
    m.host = f"127.0.0.1:{m.lmstudio}"
    yield m
    stop_mesh(m)


def runners(m):
    return {r["model"]: r for r in rpc(m, "runners.sock", "runners.list")}


def wait_until(predicate, timeout=30, what="the condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def unload_all(m):
    rpc(m, "runners.sock", "runners.unloadAll")
    wait_until(lambda: all(r["state"] in ("stopped", "failed") for r in runners(m).values()), what="every runner stopping")


def openai_text(m, prompt, max_tokens):
    body = json.dumps({"model": "smol", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}).encode()
    req = urllib.request.Request(f"http://{m.host}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["choices"][0]["message"]["content"]


# --- the probes ------------------------------------------------------------------------------------

def test_the_probes_answer_as_lm_studio_does(lm):
    with urllib.request.urlopen(f"http://{lm.host}/lmstudio-greeting", timeout=5) as r:
        assert json.loads(r.read())["lmstudio"] is True
    with urllib.request.urlopen(f"http://{lm.host}/lms-status", timeout=5) as r:
        doc = json.loads(r.read())
        assert isinstance(doc["package"], str) and isinstance(doc["version"], str)
    assert lms.Client.is_valid_api_host(lm.host)


# --- sync client ------------------------------------------------------------------------------------

def test_downloaded_models_list_both_kinds(lm):
    with lms.Client(lm.host) as client:
        models = {m.model_key: m for m in client.list_downloaded_models()}
        assert set(models) == {"smol", "smol-embed", "smol-slow"}
        assert models["smol"].type == "llm" and models["smol-embed"].type == "embedding"
        info = models["smol"].info
        assert info.format == "gguf" and info.path == MODEL and info.size_bytes == os.path.getsize(MODEL)
        assert info.max_context_length == 8192 and info.architecture == "llama" and info.vision is False
        assert [m.model_key for m in client.llm.list_downloaded()] == ["smol", "smol-slow"]
        assert [m.model_key for m in client.embedding.list_downloaded()] == ["smol-embed"]


def test_model_loads_a_stopped_model_with_rising_progress(lm):
    unload_all(lm)
    progress = []
    with lms.Client(lm.host) as client:
        assert client.llm.list_loaded() == []
        model = client.llm.model("smol", on_load_progress=progress.append)
        assert model.identifier == "smol"
        assert runners(lm)["smol"]["state"] == "ready", "loaded by the same runner-manager as every surface"
        assert progress and progress[-1] == 1.0 and progress == sorted(progress) and len(set(progress)) == len(progress)
        assert [h.identifier for h in client.llm.list_loaded()] == ["smol"]
        # Asked again, the loaded instance is returned (no second load).
        pid = runners(lm)["smol"]["pid"]
        assert client.llm.model("smol").identifier == "smol" and runners(lm)["smol"]["pid"] == pid


def test_respond_matches_the_openai_api_and_reports_stats(lm):
    prompt = "What is the capital of France?"
    with lms.Client(lm.host) as client:
        model = client.llm.model("smol")
        result = model.respond(prompt, config={"maxTokens": 24, "temperature": 0})
        assert result.content.strip()
        assert result.content == openai_text(lm, prompt, 24), "the same runner, template and greedy sampling give the same answer"
        s = result.stats
        assert s.stop_reason in ("eosFound", "maxPredictedTokensReached")
        assert s.tokens_per_second > 0 and 0 < s.time_to_first_token_sec < 30
        assert s.prompt_tokens_count > 5 and 0 < s.predicted_tokens_count <= 24
        assert s.total_tokens_count == s.prompt_tokens_count + s.predicted_tokens_count
        assert result.model_info.model_key == "smol"
        assert result.prediction_config.max_tokens == 24 and result.prediction_config.temperature == 0


def test_respond_stream_fragments_join_into_the_text(lm):
    first = []
    with lms.Client(lm.host) as client:
        model = client.llm.model("smol")
        stream = model.respond_stream("Count from one to ten.", config={"maxTokens": 30, "temperature": 0},
                                      on_first_token=lambda: first.append(time.time()))
        fragments = [f.content for f in stream]
        result = stream.result()
        assert len(fragments) >= 5 and "".join(fragments) == result.content
        assert first, "on_first_token fired"
        assert result.stats.stop_reason == "maxPredictedTokensReached" and result.stats.predicted_tokens_count == 30


def test_cancel_mid_stream_stops_generation_and_reports_user_stopped(lm):
    with lms.Client(lm.host) as client:
        model = client.llm.model("smol")
        stream = model.respond_stream("Write a very long story about a dragon.", config={"maxTokens": 1500, "temperature": 0.7})
        seen = 0
        for _ in stream:
            seen += 1
            if seen == 3:
                stream.cancel()
        result = stream.result()
        assert result.stats.stop_reason == "userStopped"
        assert result.stats.predicted_tokens_count < 1500
    # The runner's slot is free again: no lease left, and the next request is answered at once.
    wait_until(lambda: runners(lm)["smol"]["activeLeases"] == 0, timeout=5, what="the lease going back")
    started = time.time()
    assert openai_text(lm, "Hi", 4)
    assert time.time() - started < 10


def test_complete_is_a_raw_completion(lm):
    with lms.Client(lm.host) as client:
        result = client.llm.model("smol").complete("The capital of France is", config={"maxTokens": 6, "temperature": 0})
        assert "Paris" in result.content
        assert result.stats.stop_reason in ("eosFound", "maxPredictedTokensReached", "stopStringFound")


def test_tokenize_count_context_info_and_template(lm):
    with lms.Client(lm.host) as client:
        model = client.llm.model("smol")
        tokens = model.tokenize("Hello world, hello tokens")
        assert tokens and all(isinstance(t, int) for t in tokens)
        assert model.count_tokens("Hello world, hello tokens") == len(tokens)
        assert model.tokenize(["one", "two"]) == [model.tokenize("one"), model.tokenize("two")]
        assert model.get_context_length() == 2048
        info = model.get_info()
        assert info.identifier == "smol" and info.model_key == "smol" and info.context_length == 2048
        assert model.get_load_config().context_length == 2048
        chat = lms.Chat("You are terse.")
        chat.add_user_message("Say hi")
        formatted = model.apply_prompt_template(chat)
        assert "<|im_start|>user" in formatted and "Say hi" in formatted and "You are terse." in formatted


def test_embeddings_through_the_embedding_namespace(lm):
    with lms.Client(lm.host) as client:
        model = client.embedding.model("smol-embed")
        vector = model.embed("hello")
        assert len(vector) == 576 and any(v != 0 for v in vector)
        assert [len(v) for v in model.embed(["a", "b"])] == [576, 576]
        assert model.get_info().identifier == "smol-embed"
        assert "smol-embed" in [h.identifier for h in client.embedding.list_loaded()]
        assert "smol-embed" not in [h.identifier for h in client.llm.list_loaded()]


def test_load_new_instance_with_context_length_and_ttl_then_unload(lm):
    unload_all(lm)
    with lms.Client(lm.host) as client:
        model = client.llm.load_new_instance("smol", config={"contextLength": 1024}, ttl=120)
        assert model.get_context_length() == 1024
        assert runners(lm)["smol"]["contextLength"] == 1024
        assert 100 < runners(lm)["smol"]["expiresInSeconds"] <= 120, "the ttl is the runner's idle timeout"
        # Predictions go to that instance, with its settings: the runner is not restarted.
        pid = runners(lm)["smol"]["pid"]
        assert model.respond("Hi", config={"maxTokens": 4}).content is not None
        assert runners(lm)["smol"]["pid"] == pid
        with pytest.raises(lms.LMStudioServerError) as e:
            client.llm.load_new_instance("smol")
        assert "already exists" in str(e.value)
        model.unload()
        wait_until(lambda: runners(lm)["smol"]["state"] in ("stopped", "stopping"), what="the unload")
        assert "smol" not in [h.identifier for h in client.llm.list_loaded()]


def test_unknown_models_raise_the_sdks_not_found_error(lm):
    with lms.Client(lm.host) as client:
        with pytest.raises(lms.LMStudioModelNotFoundError):
            client.llm.model("no-such-model")
        with pytest.raises(lms.LMStudioModelNotFoundError):
            client.llm.unload("no-such-model")
        with pytest.raises(lms.LMStudioModelNotFoundError):
            client.llm.model("smol-embed")  # an embedding model is not an LLM


def test_unsupported_operations_fail_precisely_instead_of_hanging(lm):
    with lms.Client(lm.host) as client:
        started = time.time()
        with pytest.raises(lms.LMStudioServerError) as e:
            client.repository.search_models("smollm2")
        assert "not supported" in str(e.value) and time.time() - started < 5
        with pytest.raises(lms.LMStudioServerError):
            client.llm.model("smol").respond("hi", preset="no-such-preset")


def test_a_client_used_without_with_connects_directly(lm):
    client = lms.Client(lm.host)  # no probe: the websocket is opened on first use
    try:
        assert "smol" in [m.model_key for m in client.llm.list_downloaded()]
    finally:
        client.close()


def test_a_slow_load_keeps_the_sync_client_waiting(lm):
    """The sync SDK gives up after a silence (60 s by default, 2 s here); a load that takes longer than
    that still succeeds because progress packets keep coming (smol-slow's runtime starts 5 s late)."""
    previous = lms.get_sync_api_timeout()
    lms.set_sync_api_timeout(2)
    progress = []
    try:
        with lms.Client(lm.host) as client:
            started = time.time()
            model = client.llm.model("smol-slow", on_load_progress=progress.append)
            assert time.time() - started > 5
            assert model.respond("Hi", config={"maxTokens": 3}).content is not None
    finally:
        lms.set_sync_api_timeout(previous)
        rpc(lm, "runners.sock", "runners.unload", {"model": "smol-slow"})
    assert len(progress) >= 5 and progress == sorted(progress) and progress[-1] == 1.0


def test_a_jit_load_that_evicts_another_model_announces_it(tmp_path_factory):
    """With one model slot, getOrLoad of a second model evicts the first; the channel says so
    (`unloadingOtherJITModel`, with the evicted instance's info) before `loadSuccess`."""
    m = start_mesh({"limits": {"max_loaded_models": 1}}, {"models": {
        "smol-a": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
        "smol-b": {"model_path": MODEL, "parameters": {"ctx_size": 256}},
    }})
    try:
        with lms.Client(f"127.0.0.1:{m.lmstudio}") as client:
            client.llm.model("smol-a")
        with wsclient.connect(f"ws://127.0.0.1:{m.lmstudio}/llm") as ws:
            ws.send(json.dumps({"authVersion": 1, "clientIdentifier": "t", "clientPasskey": "t"}))
            assert json.loads(ws.recv(timeout=5)) == {"success": True}
            ws.send(json.dumps({"type": "channelCreate", "endpoint": "getOrLoad", "channelId": 1,
                                "creationParameter": {"identifier": "smol-b", "loadConfigStack": {"layers": []}}}))
            packets = []
            while True:
                msg = json.loads(ws.recv(timeout=60))
                assert msg["channelId"] == 1
                if msg["type"] == "channelClose":
                    break
                assert msg["type"] == "channelSend", msg
                packets.append(msg["message"])
        kinds = [p["type"] for p in packets]
        assert kinds[0] == "startLoading" and kinds[-1] == "loadSuccess"
        evicted = [p for p in packets if p["type"] == "unloadingOtherJITModel"]
        assert len(evicted) == 1 and evicted[0]["info"]["modelKey"] == "smol-a"
        assert kinds.index("unloadingOtherJITModel") < kinds.index("loadSuccess")
        progress = [p["progress"] for p in packets if p["type"] == "loadProgress"]
        assert progress and progress == sorted(progress) and all(0 <= x < 1 for x in progress)
        assert packets[-1]["info"]["identifier"] == "smol-b" and packets[-1]["info"]["contextLength"] == 256
    finally:
        stop_mesh(m)


# --- async client ------------------------------------------------------------------------------------

def test_async_client_does_every_operation(lm):
    async def main():
        async with lms.AsyncClient(lm.host) as client:  # opens all five namespaces at once
            assert {m.model_key for m in await client.list_downloaded_models()} >= {"smol", "smol-embed"}
            model = await client.llm.model("smol")
            result = await model.respond("Name a color.", config={"maxTokens": 12, "temperature": 0})
            assert result.content.strip() and result.stats.tokens_per_second > 0
            stream = await model.respond_stream("Count from one to twenty.", config={"maxTokens": 40, "temperature": 0})
            pieces = [f.content async for f in stream]
            assert "".join(pieces) == stream.result().content
            stream = await model.respond_stream("Tell me a long story.", config={"maxTokens": 1000})
            n = 0
            async for _ in stream:
                n += 1
                if n == 2:
                    await stream.cancel()
            assert stream.result().stats.stop_reason == "userStopped"
            assert await model.count_tokens("abc def") == len(await model.tokenize("abc def"))
            assert await model.get_context_length() == 2048
            embedder = await client.embedding.model("smol-embed")
            assert len(await embedder.embed("hi")) == 576
            loaded = [h.identifier for h in await client.list_loaded_models()]
            assert "smol" in loaded and "smol-embed" in loaded
            with pytest.raises(lms.LMStudioModelNotFoundError):
                await client.llm.model("nope")
            await model.unload()
            assert "smol" not in [h.identifier for h in await client.llm.list_loaded()]
    asyncio.run(main())


# --- authentication ------------------------------------------------------------------------------------

class TokenClient(lms.Client):
    """What lmstudio 1.6 does with `api_token` (split `sk-lm-<id>:<key>` into the auth message's two
    fields), on the 1.5.0 client, whose auth message otherwise carries two random UUIDs."""
    token = TOKEN

    def _create_auth_message(self):
        identifier, passkey = self.token[len("sk-lm-"):].split(":")
        return self._format_auth_message(identifier, passkey)


@pytest.fixture(scope="module")
def locked():
    m = start_mesh({"proxies": {"lmstudio": {"api_keys": [TOKEN]}}}, {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 1024}}}})
    m.host = f"127.0.0.1:{m.lmstudio}"
    yield m
    stop_mesh(m)


def test_with_api_keys_only_a_matching_token_gets_in(locked):
    # The probe stays open (the SDK sends it without credentials).
    assert lms.Client.is_valid_api_host(locked.host)
    # lmstudio 1.5.0 turns the refusal's error string into a ValueError (1.6 raises its own error type;
    # the JS SDK requires the string): either way the client is refused.
    with pytest.raises((lms.LMStudioError, ValueError)):
        with lms.Client(locked.host) as client:
            client.llm.list_downloaded()

    class WrongToken(TokenClient):
        token = "sk-lm-Abc12345:zzzzzzzzzzzzzzzzzzzz"
    with pytest.raises((lms.LMStudioError, ValueError)):
        with WrongToken(locked.host) as client:
            client.llm.list_downloaded()
    # What the refusal says, read off the wire.
    with wsclient.connect(f"ws://{locked.host}/llm") as ws:
        ws.send(json.dumps({"authVersion": 1, "clientIdentifier": "Abc12345", "clientPasskey": "zzzzzzzzzzzzzzzzzzzz"}))
        reply = json.loads(ws.recv(timeout=5))
        assert reply["success"] is False and "Invalid API token" in reply["error"] and "api_keys" in reply["error"]
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 1008

    with TokenClient(locked.host) as client:
        assert [m.model_key for m in client.llm.list_downloaded()] == ["smol"]
        assert client.llm.model("smol").respond("Hi", config={"maxTokens": 3}).content is not None
