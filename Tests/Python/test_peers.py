"""Peers: a second Llama Runner on other loopback ports (with an API key on its LM Studio surface) is a
peer of the first, which serves no model of its own. The official clients talk to the first one only."""
import json
import socket
import time
import urllib.error
import urllib.request

import ollama
import openai
import pytest

from conftest import MODEL, call_json, free_ports, start_mesh, stop_mesh, wait_for

PEER_KEY = "sk-peer-key"


call = call_json  # conftest




@pytest.fixture(scope="module")
def peer():
    m = start_mesh({"proxies": {"lmstudio": {"api_keys": [PEER_KEY]}}}, {"models": {
        "smol-a": {"model_path": MODEL, "parameters": {"ctx_size": 1024}},
        "smol-b": {"model_path": MODEL, "parameters": {"ctx_size": 512}},
    }})
    yield m
    stop_mesh(m)


@pytest.fixture(scope="module")
def front(peer):
    # "gone" names a port nothing listens on (taken and released here, so no other test holds it).
    (dead,) = free_ports(1)
    m = start_mesh({"peers": {
        "lab": {"base_url": peer.url(peer.lmstudio) + "/v1", "api_key": PEER_KEY, "models": ["smol-a"], "poll_interval_seconds": 2},
        "gone": {"base_url": f"http://127.0.0.1:{dead}"},
    }}, {"models": {}})
    m.dead_port = dead
    wait_for("peer lab up", lambda: any(p["name"] == "lab" and p["state"] == "up" for p in call("GET", m.url(m.api) + "/api/peers")[1]))
    yield m
    stop_mesh(m)


def peer_records(mesh, model):
    return [r["record"] for r in call("GET", mesh.url(mesh.api) + "/api/requests?limit=200")[1] if r["record"]["model"] == model]


def test_peer_models_on_every_surface(front):
    """Only the models the filter lets through, as peer/model, in OpenAI, Ollama and LM Studio listings."""
    for port in (front.ollama, front.lmstudio):
        ids = [m.id for m in openai.OpenAI(base_url=front.url(port) + "/v1", api_key="x", max_retries=0).models.list()]
        assert "lab/smol-a" in ids and "lab/smol-b" not in ids, ids
    names = [m.model for m in ollama.Client(host=front.url(front.ollama)).list().models]
    assert "lab/smol-a:latest" in names, names
    status, v0 = call("GET", front.url(front.lmstudio) + "/api/v0/models")
    assert status == 200 and "lab/smol-a" in [m["id"] for m in v0["data"]]
    # Another Llama Runner reading this one as its peer gets only what is served here (none): no loops.
    req = urllib.request.Request(front.url(front.ollama) + "/v1/models", headers={"x-llama-runner-peer-listing": "1"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["data"] == []
    status, peers = call("GET", front.url(front.api) + "/api/peers")
    lab = next(p for p in peers if p["name"] == "lab")
    assert lab["state"] == "up" and lab["models"] == ["smol-a"] and lab["apiKey"] is True and PEER_KEY not in json.dumps(peers)
    status, config = call("GET", front.url(front.api) + "/api/config")
    assert config["app"]["peers"]["lab"]["api_key"] == "<redacted>" and PEER_KEY not in json.dumps(config)


def test_openai_client_through_peer(front, peer):
    """Non-streamed and streamed chat through the peer, its own key injected (the client's is not
    forwarded: this one would be refused by the peer), recorded on both sides under each one's name."""
    oai = openai.OpenAI(base_url=front.url(front.ollama) + "/v1", api_key="sk-client-key-the-peer-refuses", max_retries=0)
    r = oai.chat.completions.create(model="lab/smol-a", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, temperature=0)
    assert r.choices[0].message.content and r.usage.completion_tokens > 0
    chunks = list(oai.chat.completions.create(model="lab/smol-a", messages=[{"role": "user", "content": "Count to five"}],
                                              max_tokens=12, temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    # The peer refuses that client key itself.
    assert call("POST", peer.url(peer.lmstudio) + "/v1/chat/completions", {"model": "smol-a", "messages": []},
                headers={"Authorization": "Bearer sk-client-key-the-peer-refuses"})[0] == 401
    front_records = wait_for("front records", lambda: [r for r in peer_records(front, "lab/smol-a") if r["status"] == 200][:2] or None)
    assert front_records[0]["completionTokens"] > 0 and front_records[0]["api"] == "openai"
    assert wait_for("peer records", lambda: len(peer_records(peer, "smol-a")) >= 2)


def test_ollama_client_through_peer(front):
    """An Ollama client chatting with a model another OpenAI-compatible server serves: translated here."""
    client = ollama.Client(host=front.url(front.ollama))
    r = client.chat(model="lab/smol-a", messages=[{"role": "user", "content": "Say hi"}], options={"num_predict": 8, "temperature": 0})
    assert r.message.role == "assistant" and r.message.content and r.eval_count > 0
    parts = list(client.generate(model="lab/smol-a", prompt="The sky is", stream=True, options={"num_predict": 8}))
    assert parts[-1].done and "".join(p.response for p in parts).strip()
    # Raw mode (no template) goes to the peer's /v1/completions, translated back to Ollama's shape.
    raw = client.generate(model="lab/smol-a", prompt="The capital of France is", raw=True, stream=False, options={"num_predict": 6, "temperature": 0})
    assert raw.done and raw.response.strip() and raw.eval_count > 0
    raw_parts = list(client.generate(model="lab/smol-a", prompt="One, two, three,", raw=True, stream=True, options={"num_predict": 6}))
    assert raw_parts[-1].done and "".join(p.response for p in raw_parts).strip()
    embed = client.embed(model="lab/smol-a", input="hello")
    assert len(embed.embeddings) == 1 and len(embed.embeddings[0]) > 10
    # An empty prompt "loads": the peer loads on its first request, so this answers at once.
    assert client.generate(model="lab/smol-a", prompt="").done


def test_client_disconnect_reaches_the_peer(front, peer):
    """A client that leaves mid-stream closes the connection to the peer, whose own record says so."""
    before = len(peer_records(peer, "smol-a"))
    body = json.dumps({"model": "lab/smol-a", "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
                       "max_tokens": 400, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", front.ollama), timeout=60)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while got.count(b"data: ") < 3:
        got += s.recv(4096)
    s.close()
    # Wait for the cut request's own record: a record of an earlier test's request can land after `before`.
    cut = wait_for("the peer's record of the cut request", lambda: [
        r for r in peer_records(peer, "smol-a")[:len(peer_records(peer, "smol-a")) - before]
        if r["clientDisconnected"] and r["route"] == "/v1/chat/completions"] or None)
    assert cut[0]["completionTokens"] < 400
    mine = wait_for("the front's record", lambda: [r for r in peer_records(front, "lab/smol-a") if r["clientDisconnected"]] or None)
    assert mine[0]["route"] == "/v1/chat/completions"


def test_down_peer_answers_503_at_once_and_recovers(front, peer):
    """A peer nothing answers for is shown down; its models get a precise 503 in each API's shape, fast;
    pointing it at a live server (a config edit, no restart) brings it up."""
    api = front.url(front.api)
    gone = wait_for("gone down", lambda: next((p for p in call("GET", api + "/api/peers")[1] if p["name"] == "gone" and p["state"] == "down"), None))
    assert "refused" in gone["error"].lower(), gone
    start = time.time()
    status, body = call("POST", front.url(front.ollama) + "/v1/chat/completions", {"model": "gone/anything", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 503 and "peer 'gone'" in body["error"]["message"] and "down" in body["error"]["message"]
    status, body = call("POST", front.url(front.ollama) + "/api/chat", {"model": "gone/anything", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 503 and "peer 'gone'" in body["error"]
    assert time.time() - start < 2
    # A model the filter leaves out of an up peer is unknown, not relayed.
    assert call("POST", front.url(front.ollama) + "/v1/chat/completions", {"model": "lab/smol-b", "messages": []})[0] == 404
    # The dashboard shows both peers' models with their peer's state.
    models = {m["model"]["id"]: m for m in call("GET", api + "/api/models")[1]["models"]}
    assert models["lab/smol-a"]["peerState"] == "up" and models["lab/smol-a"]["model"]["peer"] == {"peer": "lab", "model": "smol-a"}

    status, config = call("GET", api + "/api/config")
    app = json.loads(json.dumps(config["app"]))
    app["peers"]["gone"] = {"base_url": peer.url(peer.lmstudio), "api_key": PEER_KEY, "models": ["smol-b"]}
    assert call("PUT", api + "/api/config", {"revision": config["revision"], "app": app})[0] == 200
    on_disk = json.load(open(front.config + "/app_config.json"))
    assert on_disk["peers"]["lab"]["api_key"] == PEER_KEY, "the redacted key was written back"
    wait_for("gone up", lambda: any(p["name"] == "gone" and p["state"] == "up" for p in call("GET", api + "/api/peers")[1]))
    oai = openai.OpenAI(base_url=front.url(front.lmstudio) + "/v1", api_key="x", max_retries=0)
    r = oai.chat.completions.create(model="gone/smol-b", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert r.choices[0].message.content is not None
