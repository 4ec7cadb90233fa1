"""Load progress in the stream (`proxies.<surface>.stream_loading_progress`): while a streamed request
waits for its model to load, the official clients receive the wait in their API's own shape — OpenAI
`reasoning_content` deltas, Ollama `thinking` — ended before the real answer, which they still parse."""
import httpx
import ollama
import openai
import pytest

from conftest import MODEL, rpc, start_mesh, stop_mesh


@pytest.fixture(scope="module")
def progress_mesh():
    m = start_mesh({"limits": {"max_loaded_models": 1},
                    "proxies": {"ollama": {"stream_loading_progress": True}, "lmstudio": {"stream_loading_progress": True}}},
                   {"models": {"slow": {"model_path": MODEL, "parameters": {"ctx_size": 32768, "parallel": 8}}}})
    yield m
    stop_mesh(m)


def unload(m):
    rpc(m, "runners.sock", "runners.unload", {"model": "slow"})
    for _ in range(600):
        if all(r["state"] in ("stopped", "failed") for r in rpc(m, "runners.sock", "runners.list") if r["model"] == "slow"):
            return
        import time
        time.sleep(0.02)


def test_openai_stream_shows_the_load_as_reasoning_then_the_answer(progress_mesh):
    m = progress_mesh
    unload(m)
    client = openai.OpenAI(base_url=m.url(m.lmstudio) + "/v1", api_key="x")
    reasoning, content, order = "", "", []
    for chunk in client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "Say hello."}],
                                                max_tokens=8, temperature=0, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        r = (delta.model_extra or {}).get("reasoning_content")
        if r:
            reasoning += r
            order.append("r")
        if delta.content:
            content += delta.content
            order.append("c")
    assert reasoning.startswith("Loading slow") and "is loaded" in reasoning, reasoning
    assert content, "no answer after the progress"
    assert order.index("c") > max(i for i, k in enumerate(order) if k == "r"), "progress after the answer began"
    # The model is ready now: no progress at all.
    again = client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "Again."}], max_tokens=4, stream=True)
    assert not any((c.choices and (c.choices[0].delta.model_extra or {}).get("reasoning_content")) for c in again)


def test_ollama_stream_shows_the_load_as_thinking_and_non_streamed_requests_are_unaffected(progress_mesh):
    m = progress_mesh
    unload(m)
    client = ollama.Client(host=m.url(m.ollama))
    parts = list(client.chat(model="slow", messages=[{"role": "user", "content": "Say hello."}], stream=True,
                             options={"num_predict": 8, "temperature": 0}))
    thinking = "".join(p.message.thinking or "" for p in parts)
    content = "".join(p.message.content or "" for p in parts)
    assert thinking.startswith("Loading slow") and "is loaded" in thinking, thinking
    assert content and parts[-1].done
    unload(m)
    r = httpx.post(m.url(m.lmstudio) + "/v1/chat/completions", timeout=120,
                   json={"model": "slow", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200 and "reasoning_content" not in r.json()["choices"][0]["message"], r.text
