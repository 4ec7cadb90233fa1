"""The official clients against the real gateway, runner-manager and llama-server."""
import json
import urllib.error
import urllib.request

import anthropic
import ollama
import openai
import pytest

from conftest import rpc


def post_raw(url, body, content_type="application/json"):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --- OpenAI, on both ports ------------------------------------------------------------------------

@pytest.fixture(params=["ollama", "lmstudio"])
def oai(mesh, request):
    port = mesh.ollama if request.param == "ollama" else mesh.lmstudio
    return openai.OpenAI(base_url=mesh.url(port) + "/v1", api_key="unused", max_retries=0)


def test_models_list(oai):
    ids = [m.id for m in oai.models.list()]
    assert "smol" in ids and "smol-embed" in ids
    assert oai.models.retrieve("smol").id == "smol"


def test_chat_completion(oai):
    r = oai.chat.completions.create(model="smol", messages=[{"role": "user", "content": "What is the capital of France?"}],
                                    max_tokens=16, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content.strip()  # a 135M model's answers vary; the completion tests check facts
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens > 0


def test_chat_stream_with_usage_in_the_last_chunk(oai):
    chunks = list(oai.chat.completions.create(model="smol-alias", messages=[{"role": "user", "content": "Count to five."}],
                                              max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_legacy_completion(oai):
    r = oai.completions.create(model="smol", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert "Paris" in r.choices[0].text


def test_embeddings(oai):
    r = oai.embeddings.create(model="smol-embed", input=["hello", "world"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 576


def test_unknown_model_is_not_found(oai):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    assert "smol" in e.value.body["message"]


def test_bad_json_and_wrong_types_are_400_in_the_openai_shape(mesh):
    status, body = post_raw(mesh.url(mesh.lmstudio) + "/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error" and "line 1" in body["error"]["message"]
    status, body = post_raw(mesh.url(mesh.lmstudio) + "/v1/chat/completions", json.dumps({"model": 7, "messages": []}).encode())
    assert status == 400 and body["error"]["param"] == "model"


def test_responses_api(mesh):
    client = openai.OpenAI(base_url=mesh.url(mesh.lmstudio) + "/v1", api_key="unused", max_retries=0)
    r = client.responses.create(model="smol", input="Say hello", max_output_tokens=12)
    assert r.output_text.strip()


def test_anthropic_messages(mesh):
    client = anthropic.Anthropic(base_url=mesh.url(mesh.lmstudio), api_key="unused", max_retries=0)
    m = client.messages.create(model="smol", max_tokens=12, messages=[{"role": "user", "content": "Say hello"}])
    assert m.content[0].text.strip()
    with client.messages.stream(model="smol", max_tokens=12, messages=[{"role": "user", "content": "Say hello"}]) as s:
        text = "".join(s.text_stream)
    assert text.strip()


# --- Ollama ---------------------------------------------------------------------------------------

@pytest.fixture
def oll(mesh):
    return ollama.Client(host=mesh.url(mesh.ollama))


def test_ollama_list_show_and_ps(oll):
    names = [m.model for m in oll.list().models]
    assert "smol:latest" in names
    shown = oll.show("smol")
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert "completion" in shown.capabilities
    assert shown.details.quantization_level == "Q4_1"
    oll.generate(model="smol", prompt="")  # load
    assert any(m.model == "smol:latest" for m in oll.ps().models)


def test_ollama_chat_streaming_and_not(oll):
    r = oll.chat(model="smol", messages=[{"role": "user", "content": "What is the capital of France?"}],
                 options={"temperature": 0, "num_predict": 16})
    assert r.message.content.strip() and r.done and r.done_reason in ("stop", "length")
    assert r.eval_count > 0 and r.total_duration > 0
    parts = list(oll.chat(model="smol", messages=[{"role": "user", "content": "Say hello"}], stream=True,
                          options={"temperature": 0, "num_predict": 8}))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.message.content for p in parts).strip()


def test_ollama_generate(oll):
    r = oll.generate(model="smol:latest", prompt="The capital of France is", raw=True, options={"temperature": 0, "num_predict": 8})
    assert r.model == "smol:latest" and "Paris" in r.response and r.done and r.done_reason in ("stop", "length")
    assert r.eval_count > 0 and r.prompt_eval_count > 0
    chat_style = oll.generate(model="smol", prompt="Say hello", options={"temperature": 0, "num_predict": 8})
    assert chat_style.response.strip()


def test_ollama_load_and_unload(oll):
    loaded = oll.generate(model="smol", prompt="")
    assert loaded.done_reason == "load"
    unloaded = oll.chat(model="smol", messages=[], keep_alive=0)
    assert unloaded.done_reason == "unload"
    with pytest.raises(ollama.ResponseError) as e:
        oll.chat(model="smol-embed", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 400 and "does not support chat" in e.value.error


def test_ollama_embed(oll):
    r = oll.embed(model="smol-embed", input=["hello", "world"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    legacy = oll.embeddings(model="smol-embed", prompt="hello")
    assert len(legacy.embedding) == 576


def test_ollama_unknown_model(oll):
    with pytest.raises(ollama.ResponseError) as e:
        oll.chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404 and "not found" in e.value.error


def test_ollama_bad_requests(mesh, oll):
    status, body = post_raw(mesh.url(mesh.ollama) + "/api/chat", b"{bad")
    assert status == 400 and isinstance(body["error"], str)
    status, body = post_raw(mesh.url(mesh.ollama) + "/api/chat", json.dumps({"model": "smol", "messages": [], "keep_alive": "soon"}).encode())
    assert status == 400 and "keep_alive" in body["error"]
    with pytest.raises(ollama.ResponseError) as e:
        oll.pull("llama3")
    assert e.value.status_code == 400 and "not a Hugging Face model name" in e.value.error and "hf.co/" in e.value.error


def test_ollama_format_json_and_a_schema_constrain_the_answer(oll):
    r = oll.chat(model="smol", messages=[{"role": "user", "content": "Give a JSON object with a key colour."}], format="json",
                 options={"temperature": 0, "num_predict": 60})
    assert isinstance(json.loads(r.message.content), dict)
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name", "age"]}
    r = oll.chat(model="smol", messages=[{"role": "user", "content": "Invent a person."}], format=schema, options={"temperature": 0, "num_predict": 80})
    person = json.loads(r.message.content)
    assert isinstance(person["name"], str) and isinstance(person["age"], int), person
    r = oll.generate(model="smol", prompt="Invent a person.", format=schema, options={"temperature": 0, "num_predict": 80})
    assert isinstance(json.loads(r.response)["age"], int)


def test_ollama_tools_and_a_tool_call_history_with_object_arguments_round_trip(oll):
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather in a city",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    # The assistant's earlier call carries object arguments (Ollama's shape); llama-server takes them as a
    # JSON string, so a wrong translation is refused upstream.
    history = [{"role": "user", "content": "What is the weather in Paris?"},
               {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
               {"role": "tool", "content": "22 degrees and sunny", "tool_name": "get_weather"}]
    r = oll.chat(model="smol", messages=history, tools=tools, options={"temperature": 0, "num_predict": 24})
    assert r.done and (r.message.content.strip() or r.message.tool_calls)
    for call in r.message.tool_calls or []:  # a model that calls a tool gets object arguments back
        assert isinstance(call.function.arguments, dict)


def test_ollama_think_is_accepted_and_a_new_num_ctx_restarts_the_runner(oll, mesh):
    r = oll.chat(model="smol", messages=[{"role": "user", "content": "Hi"}], think=True, options={"num_predict": 4})
    assert r.done
    def pid():
        return next(x["pid"] for x in rpc(mesh, "runners.sock", "runners.list") if x["model"] == "smol" and x["state"] == "ready")
    before = pid()
    oll.generate(model="smol", prompt="Hi", options={"num_ctx": 768, "num_predict": 2})
    assert pid() != before, "a different context needs a runner started with it"
    assert {m.model: m for m in oll.ps().models}["smol:latest"].context_length == 768
