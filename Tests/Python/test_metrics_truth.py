"""Truthful metrics: the token counts each official client itself received, on every surface and mode,
are the ones recorded in /api/requests, in llama_runner_tokens_total and in the dashboard's tokens/s
series; a runner killed mid-stream is recorded as a failure with its reason. A mesh of its own, so no
other test's requests mix in."""
import json
import os
import re
import signal
import time
import urllib.request

import anthropic
import httpx
import ollama
import openai
import pytest

from conftest import MODEL, rpc, start_mesh, stop_mesh

PROMPT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def metrics_mesh():
    m = start_mesh({}, {"models": {
        "smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048}},
        "smol-embed": {"model_path": MODEL, "parameters": {"ctx_size": 512, "embeddings": True, "pooling": "mean"}, "kind": "embedding"},
    }})
    yield m
    stop_mesh(m)


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def tokens_total(m):
    with urllib.request.urlopen(m.url(m.api) + "/metrics", timeout=30) as r:
        text = r.read().decode()
    totals = {}
    for kind in ("prompt", "completion"):
        totals[kind] = sum(int(v) for v in re.findall(r'^llama_runner_tokens_total\{kind="%s",model="[^"]+"\} (\d+)$' % kind, text, re.M))
    return totals


def records(m):
    return get_json(m.url(m.api) + "/api/requests?limit=1000")


def next_record(m, before):
    """The one record a request adds (metrics.record is a notification: wait for it)."""
    deadline = time.time() + 5
    while time.time() < deadline:
        now = records(m)
        if len(now) > before:
            assert len(now) == before + 1, [r["record"]["route"] for r in now[: len(now) - before]]
            return now[0]["record"]
        time.sleep(0.02)
    raise AssertionError("no record arrived")


def ollama_stream(m, chat):
    c = ollama.Client(host=m.url(m.ollama))
    if chat:
        parts = list(c.chat(model="smol", messages=PROMPT, stream=True, options={"num_predict": 24, "temperature": 0}))
    else:
        parts = list(c.generate(model="smol", prompt="Name three colours.", stream=True, options={"num_predict": 24, "temperature": 0}))
    last = parts[-1]
    assert last.done
    return last.prompt_eval_count, last.eval_count


def ollama_whole(m, chat):
    c = ollama.Client(host=m.url(m.ollama))
    r = (c.chat(model="smol", messages=PROMPT, stream=False, options={"num_predict": 24}) if chat
         else c.generate(model="smol", prompt="Name three colours.", stream=False, options={"num_predict": 24}))
    return r.prompt_eval_count, r.eval_count


def openai_client(m, port):
    return openai.OpenAI(base_url=m.url(port) + "/v1", api_key="unused", max_retries=0, timeout=60)


def openai_stream_without_usage(m):
    chunks = list(openai_client(m, m.lmstudio).chat.completions.create(model="smol", messages=PROMPT, max_tokens=24, stream=True))
    assert all(c.usage is None for c in chunks)
    timings = chunks[-1].model_extra["timings"]  # llama-server's own counts, the only ones this client gets
    return timings["prompt_n"] + timings.get("cache_n", 0), timings["predicted_n"], timings.get("cache_n", 0)


def openai_stream_with_usage(m):
    chunks = list(openai_client(m, m.ollama).chat.completions.create(model="smol", messages=PROMPT, max_tokens=24, stream=True,
                                                                     stream_options={"include_usage": True}))
    return chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens


def openai_whole(m):
    r = openai_client(m, m.lmstudio).chat.completions.create(model="smol", messages=PROMPT, max_tokens=24)
    return r.usage.prompt_tokens, r.usage.completion_tokens


def lmstudio_v0(m, stream):
    body = {"model": "smol", "messages": PROMPT, "max_tokens": 24, "stream": stream}
    if not stream:
        r = httpx.post(m.url(m.lmstudio) + "/api/v0/chat/completions", json=body, timeout=60).json()
        return r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]
    with httpx.stream("POST", m.url(m.lmstudio) + "/api/v0/chat/completions", json=body, timeout=60) as r:
        events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:") and "[DONE]" not in line]
    t = events[-1]["timings"]
    return t["prompt_n"] + t.get("cache_n", 0), t["predicted_n"]


def anthropic_messages(m, stream):
    client = anthropic.Anthropic(base_url=m.url(m.lmstudio), api_key="unused", max_retries=0)
    if not stream:
        r = client.messages.create(model="smol", max_tokens=24, messages=PROMPT)
        return r.usage.input_tokens, r.usage.output_tokens
    with client.messages.stream(model="smol", max_tokens=24, messages=PROMPT) as s:
        "".join(s.text_stream)
        final = s.get_final_message()
    return final.usage.input_tokens, final.usage.output_tokens


def responses_api(m):
    r = openai_client(m, m.lmstudio).responses.create(model="smol", input="Name three colours.", max_output_tokens=24)
    return r.usage.input_tokens, r.usage.output_tokens


def openai_embeddings(m):
    r = openai_client(m, m.lmstudio).embeddings.create(model="smol-embed", input=["hello there", "general kenobi"])
    return r.usage.prompt_tokens, 0


def ollama_embed(m):
    r = ollama.Client(host=m.url(m.ollama)).embed(model="smol-embed", input=["hello there", "general kenobi"])
    return r.prompt_eval_count, 0


CASES = [
    ("ollama", "/api/chat", lambda m: ollama_stream(m, True)),
    ("ollama", "/api/chat", lambda m: ollama_whole(m, True)),
    ("ollama", "/api/generate", lambda m: ollama_stream(m, False)),
    ("ollama", "/api/generate", lambda m: ollama_whole(m, False)),
    ("lmstudio", "/v1/chat/completions", openai_stream_without_usage),
    ("lmstudio", "/v1/chat/completions", openai_stream_without_usage),  # the same prompt again: from the cache
    ("ollama", "/v1/chat/completions", openai_stream_with_usage),
    ("lmstudio", "/v1/chat/completions", openai_whole),
    ("lmstudio", "/api/v0/chat/completions", lambda m: lmstudio_v0(m, False)),
    ("lmstudio", "/api/v0/chat/completions", lambda m: lmstudio_v0(m, True)),
    ("lmstudio", "/v1/messages", lambda m: anthropic_messages(m, False)),
    ("lmstudio", "/v1/messages", lambda m: anthropic_messages(m, True)),
    ("lmstudio", "/v1/responses", responses_api),
    ("lmstudio", "/v1/embeddings", openai_embeddings),
    ("ollama", "/api/embed", ollama_embed),
]


def test_the_tokens_clients_received_are_the_tokens_recorded_on_every_surface_and_mode(metrics_mesh):
    m = metrics_mesh
    # Loads first, so load-only records (empty prompts) do not mix in.
    for model in ("smol", "smol-embed"):
        rpc(m, "runners.sock", "runners.load", {"model": model})
    time.sleep(2.5)  # one metrics sample with none of our requests
    started = time.time()
    totals_before = tokens_total(m)
    seen = {"prompt": 0, "completion": 0}
    for surface, route, run in CASES:
        before = len(records(m))
        got = run(m)
        prompt, completion = got[0], got[1]
        r = next_record(m, before)
        if len(got) == 3:
            assert r["cachedTokens"] == got[2], (r, got)
        label = f"{surface} {route} via {getattr(run, '__name__', 'lambda')}"
        assert r["route"] == route and r["status"] == 200, (label, r)
        assert prompt > 0, f"{label}: the client got no prompt count"
        assert (r["promptTokens"], r["completionTokens"]) == (prompt, completion), (label, r, prompt, completion)
        if route not in ("/v1/embeddings", "/api/embed"):
            assert completion > 0, label
        seen["prompt"] += prompt
        seen["completion"] += completion
    totals_after = tokens_total(m)
    assert {k: totals_after[k] - totals_before[k] for k in seen} == seen
    assert any(rec["record"].get("cachedTokens", 0) > 0 for rec in records(m)), "the repeated prompt came from the cache"
    # The dashboard's tokens/s series: each 2 s point is completion tokens / seconds of its interval, so
    # summed over the points since we started it gives back the completion tokens.
    time.sleep(2.5)
    points = get_json(m.url(m.api) + "/api/metrics/series?name=tokens_per_second&window=1h")["points"]
    integral, previous = 0.0, None
    for at, value in points:
        if previous is not None and at > started and value is not None:
            integral += value * (at - previous)
        previous = at
    assert round(integral) == seen["completion"], (integral, seen)
    print(f"{len(CASES)} surfaces and modes: {seen} tokens, the same in /api/requests, llama_runner_tokens_total and the tokens/s series")


def test_a_runner_killed_mid_stream_is_recorded_as_a_failure_with_its_reason(metrics_mesh):
    m = metrics_mesh
    before = len(records(m))
    body = {"model": "smol", "messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 3000, "stream": True}
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", m.url(m.ollama) + "/api/chat", json={**body, "options": {"num_predict": 3000}}) as r:
            lines = r.iter_lines()
            next(lines)
            pid = next(x for x in rpc(m, "runners.sock", "runners.list") if x["model"] == "smol")["pid"]
            os.kill(pid, signal.SIGKILL)
            rest = [json.loads(line) for line in lines if line.strip()]
    assert "error" in rest[-1]
    record = next_record(m, before)
    assert record["route"] == "/api/chat" and record["status"] == 502, record
    assert "mid-stream" in record["error"], record


def test_an_upstream_error_answer_is_recorded(metrics_mesh):
    m = metrics_mesh
    before = len(records(m))
    # llama-server refuses a prompt longer than the context: its error answer is relayed and recorded.
    long_prompt = "word " * 3000
    r = httpx.post(m.url(m.lmstudio) + "/v1/chat/completions", json={"model": "smol", "messages": [{"role": "user", "content": long_prompt}]},
                   timeout=120)
    assert r.status_code >= 400
    record = next_record(m, before)
    assert record["status"] == r.status_code and record["error"], record
