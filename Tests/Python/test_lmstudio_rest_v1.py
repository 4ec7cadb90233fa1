"""LM Studio's REST API v1 (`/api/v1/*`, LM Studio 0.4) on the LM Studio port, against the real mesh and
llama-server: the shapes field by field, load and unload, the stateful chat, streaming events, errors."""
import json
import os
import urllib.error
import urllib.request

import pytest

from conftest import MODEL, rpc, start_mesh, stop_mesh


@pytest.fixture(scope="module")
def v1():
    m = start_mesh({"limits": {"max_loaded_models": 2}, "proxies": {"lmstudio": {"api_keys": ["v1-key"]}}}, {"models": {
        "smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048}, "display_name": "SmolLM2 135M"},
        "smol-embed": {"model_path": MODEL, "parameters": {"ctx_size": 512, "embeddings": True, "pooling": "mean"}, "kind": "embedding"},
    }})
    m.base = m.url(m.lmstudio) + "/api/v1"
    yield m
    stop_mesh(m)


def call(m, method, path, body=None, key="v1-key", raw=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(m.base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def events(m, body):
    """A streamed chat as (event name, data) pairs, checking each data's type matches its event name."""
    req = urllib.request.Request(m.base + "/chat", data=json.dumps(dict(body, stream=True)).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer v1-key"}, method="POST")
    out = []
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        name = None
        for line in r.read().decode().splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["type"] == name
                out.append((name, data))
    return out


def runner(m, model):
    return next((r for r in rpc(m, "runners.sock", "runners.list") if r["model"] == model), None)


def test_models_are_listed_field_by_field(v1):
    status, doc = call(v1, "GET", "/models")
    assert status == 200
    models = {e["key"]: e for e in doc["models"]}
    assert set(models) == {"smol", "smol-embed"}
    e = models["smol"]
    assert e["type"] == "llm" and e["publisher"] == "local" and e["display_name"] == "SmolLM2 135M"
    assert e["architecture"] == "llama" and e["format"] == "gguf"
    assert e["quantization"]["name"] == "Q4_1" and 4 < e["quantization"]["bits_per_weight"] < 8
    assert e["size_bytes"] == os.path.getsize(MODEL) and e["params_string"] == "135M" and e["max_context_length"] == 8192
    assert e["capabilities"] == {"vision": False, "trained_for_tool_use": False}
    assert isinstance(e["loaded_instances"], list)
    assert models["smol-embed"]["type"] == "embedding" and "capabilities" not in models["smol-embed"]


def test_load_then_unload(v1):
    status, doc = call(v1, "POST", "/models/load", {"model": "smol", "context_length": 1024, "echo_load_config": True})
    assert status == 200, doc
    assert doc["type"] == "llm" and doc["instance_id"] == "smol" and doc["status"] == "loaded"
    assert doc["load_time_seconds"] >= 0 and doc["load_config"]["context_length"] == 1024
    assert runner(v1, "smol")["state"] == "ready" and runner(v1, "smol")["contextLength"] == 1024
    listed = {e["key"]: e for e in call(v1, "GET", "/models")[1]["models"]}
    [instance] = listed["smol"]["loaded_instances"]
    memory = instance.pop("memory")
    assert instance == {"id": "smol", "config": {"context_length": 1024}}
    # Our own field: what llama-server reported allocating, equal to what runners.list measured.
    measured = runner(v1, "smol")["measuredMemory"]
    assert memory == {"total_bytes": sum(measured["devices"].values()), "gpu_bytes": 0, "measured": True, "devices": []}, memory
    status, doc = call(v1, "POST", "/models/unload", {"instance_id": "smol"})
    assert status == 200 and doc == {"instance_id": "smol"}
    assert runner(v1, "smol")["state"] in ("stopping", "stopped")
    listed = {e["key"]: e for e in call(v1, "GET", "/models")[1]["models"]}
    assert listed["smol"]["loaded_instances"] == []
    status, doc = call(v1, "POST", "/models/unload", {"instance_id": "smol"})
    assert status == 404 and doc["error"]["type"] == "model_not_found" and doc["error"]["param"] == "instance_id"


def test_a_two_turn_stateful_chat(v1):
    status, first = call(v1, "POST", "/chat", {"model": "smol", "input": "My name is Ada. Please remember it.",
                                                "system_prompt": "You are a helpful assistant.", "max_output_tokens": 16, "temperature": 0})
    assert status == 200, first
    assert first["model_instance_id"] == "smol" and first["response_id"].startswith("resp_")
    assert [o["type"] for o in first["output"]] == ["message"] and first["output"][0]["content"].strip()
    stats = first["stats"]
    assert set(stats) >= {"input_tokens", "total_output_tokens", "reasoning_output_tokens", "tokens_per_second", "time_to_first_token_seconds"}
    assert stats["input_tokens"] > 10 and 0 < stats["total_output_tokens"] <= 16 and stats["reasoning_output_tokens"] == 0
    status, second = call(v1, "POST", "/chat", {"model": "smol", "input": "What is my name?", "previous_response_id": first["response_id"],
                                                 "max_output_tokens": 16, "temperature": 0})
    assert status == 200, second
    assert second["response_id"] != first["response_id"]
    # The second turn's prompt holds the first turn (system prompt, question, answer) and the new question.
    assert second["stats"]["input_tokens"] > stats["input_tokens"] + stats["total_output_tokens"]
    # Branching from the first response again gives the same prompt as the second turn.
    status, branch = call(v1, "POST", "/chat", {"model": "smol", "input": "What is my name?", "previous_response_id": first["response_id"],
                                                 "max_output_tokens": 16, "temperature": 0})
    assert branch["stats"]["input_tokens"] == second["stats"]["input_tokens"]
    assert branch["output"][0]["content"] == second["output"][0]["content"]
    # Not stored: no id.
    status, unstored = call(v1, "POST", "/chat", {"model": "smol", "input": "Hi", "store": False, "max_output_tokens": 4})
    assert status == 200 and "response_id" not in unstored
    status, doc = call(v1, "POST", "/chat", {"model": "smol", "input": "Hi", "previous_response_id": "resp_unknown"})
    assert status == 400 and doc["error"]["param"] == "previous_response_id" and doc["error"]["code"] == "response_not_found"


def test_a_streamed_chat_sends_lm_studios_events_in_order(v1):
    rpc(v1, "runners.sock", "runners.unloadAll")
    seq = events(v1, {"model": "smol", "input": "Count from one to five.", "max_output_tokens": 20, "temperature": 0})
    names = [n for n, _ in seq]
    assert names[0] == "chat.start" and names[-1] == "chat.end"
    assert seq[0][1]["model_instance_id"] == "smol"
    # The model was not loaded: its load is reported before prompt processing.
    assert names.index("model_load.start") < names.index("model_load.end") < names.index("prompt_processing.start")
    assert names.index("prompt_processing.start") < names.index("prompt_processing.end") < names.index("message.start")
    assert names.index("message.start") < names.index("message.delta") and names.index("message.end") == len(names) - 2
    text = "".join(d["content"] for n, d in seq if n == "message.delta")
    result = seq[-1][1]["result"]
    assert result["output"][-1] == {"type": "message", "content": text}
    assert result["stats"]["total_output_tokens"] == 20 and result["response_id"].startswith("resp_")
    assert result["stats"]["model_load_time_seconds"] > 0
    # Loaded now: no load events.
    names = [n for n, _ in events(v1, {"model": "smol", "input": "Hi", "max_output_tokens": 4})]
    assert "model_load.start" not in names and names[0] == "chat.start" and names[-1] == "chat.end"


def test_errors_are_in_v1s_shape(v1):
    status, doc = call(v1, "POST", "/chat", {"input": "Hi"})
    assert status == 400 and doc["error"]["type"] == "invalid_request" and doc["error"]["param"] == "model"
    assert doc["error"]["code"] == "missing_required_parameter"
    status, doc = call(v1, "POST", "/chat", {"model": "no-such-model", "input": "Hi"})
    assert status == 404 and doc["error"]["type"] == "model_not_found" and "smol" in doc["error"]["message"]
    status, doc = call(v1, "POST", "/chat", raw=b"{nope")
    assert status == 400 and doc["error"]["type"] == "invalid_request" and "line 1" in doc["error"]["message"]
    status, doc = call(v1, "POST", "/chat", {"model": "smol", "input": [{"type": "message", "role": "assistant", "content": "x"}]})
    assert status == 400 and "only user messages" in doc["error"]["message"]
    status, doc = call(v1, "POST", "/chat", {"model": "smol", "input": "Hi", "temperature": "hot"})
    assert status == 400 and doc["error"]["param"] == "temperature"
    status, doc = call(v1, "POST", "/chat", {"model": "smol-embed", "input": "Hi"})
    assert status == 400 and "embedding model" in doc["error"]["message"]
    status, doc = call(v1, "POST", "/models/download", {"model": "llama3.2"})
    assert status == 400 and doc["error"]["type"] == "invalid_request" and "not a Hugging Face model name" in doc["error"]["message"]
    status, doc = call(v1, "GET", "/models/download/status/job_1")
    assert status == 404 and doc["error"]["type"] == "job_not_found"
    status, doc = call(v1, "GET", "/nothing-here")
    assert status == 404 and doc["error"]["type"] == "invalid_request" and doc["error"]["code"] == "unknown_endpoint"


def test_bearer_auth_with_api_keys(v1):
    status, doc = call(v1, "GET", "/models", key=None)
    assert status == 401 and doc["error"]["code"] == "invalid_api_key"
    status, doc = call(v1, "GET", "/models", key="wrong")
    assert status == 401
    assert call(v1, "GET", "/models")[0] == 200
