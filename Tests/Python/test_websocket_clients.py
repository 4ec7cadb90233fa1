"""The gateway's WebSocket (RFC 6455) under two independent client implementations from PyPI —
`websockets` and `wsproto` — and under raw frames, on the LM Studio port's real SDK namespaces: the
handshake, the LM Studio envelope, pings, fragmentation, close codes, the size limit, invalid UTF-8,
and a client that vanishes mid-message. (The full conformance table runs in the Swift suite,
Tests/SharedTests/HTTP/WebSocketConformanceTests.swift.)"""
import base64
import json
import os
import socket
import struct
import time

import pytest
import websockets
import websockets.sync.client as wsclient
import wsproto
import wsproto.events as wse

from conftest import MODEL, start_mesh, stop_mesh

LIMIT = 65536
AUTH = {"authVersion": 1, "clientIdentifier": "test-client", "clientPasskey": "test-passkey"}


@pytest.fixture(scope="module")
def wm():
    m = start_mesh({"http": {"websocket_max_message_bytes": LIMIT}}, {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 512}}}})
    m.ws = f"ws://127.0.0.1:{m.lmstudio}"
    yield m
    stop_mesh(m)


def open_fds(m):
    return len(os.listdir(f"/proc/{m.pid('gateway')}/fd"))


# --- websockets --------------------------------------------------------------------------------------

def test_websockets_client_speaks_the_lm_studio_envelope(wm):
    with wsclient.connect(wm.ws + "/system", max_size=None) as ws:
        ws.send(json.dumps(AUTH))
        assert json.loads(ws.recv(timeout=5)) == {"success": True}
        ws.send(json.dumps({"type": "rpcCall", "endpoint": "listDownloadedModels", "callId": 1}))
        reply = json.loads(ws.recv(timeout=5))
        assert reply["type"] == "rpcResult" and reply["callId"] == 1 and reply["result"][0]["modelKey"] == "smol"
        # A void result has no "result" key at all.
        ws.send(json.dumps({"type": "rpcCall", "endpoint": "notify", "callId": 2, "parameter": {"title": "x"}}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "rpcResult", "callId": 2}
        # Ping → pong with the same payload.
        ws.ping(b"are you there").wait(timeout=5)
        # A fragmented message (three frames) is one message.
        call = json.dumps({"type": "rpcCall", "endpoint": "version", "callId": 3})
        ws.send([call[:10], call[10:20], call[20:]])
        reply = json.loads(ws.recv(timeout=5))
        assert reply["callId"] == 3 and "version" in reply["result"]
        # An unknown endpoint gets an error at once (LM Studio's own server would leave it hanging).
        ws.send(json.dumps({"type": "rpcCall", "endpoint": "noSuchThing", "callId": 4}))
        reply = json.loads(ws.recv(timeout=5))
        assert reply["type"] == "rpcError" and "not supported" in reply["error"]["title"]
        # Something that is not a message of the protocol: a communication warning, the socket stays up.
        ws.send("not json")
        assert json.loads(ws.recv(timeout=5))["type"] == "communicationWarning"
        ws.send(json.dumps({"type": "rpcCall", "endpoint": "version", "callId": 5}))
        assert json.loads(ws.recv(timeout=5))["callId"] == 5
    assert ws.close_code == 1000


def test_model_shapes_carry_the_js_sdks_required_fields(wm):
    """lmstudio-js validates every packet with zod and drops (and never resolves) what fails: the fields it
    requires beyond the Python SDK's, with the types it requires (quantization.bits a whole number,
    nullable fields present as null)."""
    from conftest import rpc
    rpc(wm, "runners.sock", "runners.load", {"model": "smol"})
    with wsclient.connect(wm.ws + "/system") as ws:
        ws.send(json.dumps(AUTH))
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "rpcCall", "endpoint": "listDownloadedModels", "callId": 1}))
        info = json.loads(ws.recv(timeout=5))["result"][0]
    for key, kind in [("type", str), ("modelKey", str), ("format", str), ("displayName", str), ("publisher", str), ("path", str),
                      ("sizeBytes", int), ("indexedModelIdentifier", str), ("vision", bool), ("trainedForToolUse", bool),
                      ("maxContextLength", int), ("paramsString", str), ("architecture", str)]:
        assert isinstance(info[key], kind), key
    assert info["deviceIdentifier"] is None and info["format"] == "gguf"
    assert info["quantization"] == {"name": "Q4_1", "bits": 4}
    with wsclient.connect(wm.ws + "/llm") as ws:
        ws.send(json.dumps(AUTH))
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "rpcCall", "endpoint": "listLoaded", "callId": 1}))
        instance = json.loads(ws.recv(timeout=5))["result"][0]
    assert instance["identifier"] == "smol" and instance["instanceReference"].startswith("lr-") and instance["contextLength"] == 512
    assert "ttlMs" in instance and "lastUsedTime" in instance
    assert isinstance(instance["ttlMs"], int) and (instance["lastUsedTime"] is None or isinstance(instance["lastUsedTime"], int))


def test_a_socket_cannot_pile_up_calls(wm):
    """Channels that stay open (`system.alive`) count against the socket's limit of 256 running calls
    and channels; past it, each new one is refused at once, and closing the socket ends them all."""
    with wsclient.connect(wm.ws + "/system") as ws:
        ws.send(json.dumps(AUTH))
        ws.recv(timeout=5)
        for i in range(1, 261):
            ws.send(json.dumps({"type": "channelCreate", "endpoint": "alive", "channelId": i}))
        refused = [json.loads(ws.recv(timeout=5)) for _ in range(4)]
        assert [r["channelId"] for r in refused] == [257, 258, 259, 260]
        assert all(r["type"] == "channelError" and "Too many" in r["error"]["title"] for r in refused)
        ws.send(json.dumps({"type": "channelSend", "channelId": 1, "message": {"type": "cancel"}}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "channelClose", "channelId": 1}
        ws.send(json.dumps({"type": "rpcCall", "endpoint": "version", "callId": 1}))
        assert json.loads(ws.recv(timeout=5))["type"] == "rpcResult", "a slot was freed by the cancel"


def test_websockets_client_an_oversized_message_closes_with_1009(wm):
    with wsclient.connect(wm.ws + "/llm", max_size=None) as ws:
        ws.send(json.dumps(AUTH))
        ws.recv(timeout=5)
        ws.send("x" * (LIMIT + 1))
        with pytest.raises(websockets.exceptions.ConnectionClosedError):
            ws.recv(timeout=5)
    assert ws.close_code == 1009


def test_websockets_client_a_wrong_first_message_is_refused_with_1008(wm):
    with wsclient.connect(wm.ws + "/llm") as ws:
        ws.send(json.dumps({"hello": "there"}))
        reply = json.loads(ws.recv(timeout=5))
        assert reply["success"] is False and "authVersion" in reply["error"]
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            ws.recv(timeout=5)
    assert ws.close_code == 1008


def test_the_handshake_is_guarded_like_every_request(wm):
    # A page on another origin cannot open the socket (a browser always sends Origin).
    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        wsclient.connect(wm.ws + "/llm", origin="http://evil.example")
    assert e.value.response.status_code == 403
    # A DNS-rebinding Host is refused.
    s = socket.create_connection(("127.0.0.1", wm.lmstudio), timeout=5)
    s.sendall(b"GET /llm HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert s.recv(64).startswith(b"HTTP/1.1 403 ")
    s.close()
    # A namespace that does not exist.
    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        wsclient.connect(wm.ws + "/nope")
    assert e.value.response.status_code == 404


# --- wsproto ------------------------------------------------------------------------------------------

class WsprotoClient:
    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.sock.sendall(self.conn.send(wse.Request(host=f"127.0.0.1:{port}", target=path)))
        self.pending = []
        assert isinstance(self.next_event(), wse.AcceptConnection)

    def next_event(self):
        while not self.pending:
            data = self.sock.recv(65536)
            self.conn.receive_data(data or None)
            self.pending.extend(self.conn.events())
            if not data and not self.pending:
                raise EOFError
        return self.pending.pop(0)

    def send(self, event):
        self.sock.sendall(self.conn.send(event))

    def text(self):
        parts = []
        while True:
            e = self.next_event()
            if isinstance(e, wse.TextMessage):
                parts.append(e.data)
                if e.message_finished:
                    return "".join(parts)
            elif isinstance(e, wse.Ping):
                self.send(e.response())


def test_wsproto_client_handshake_calls_ping_and_close(wm):
    c = WsprotoClient(wm.lmstudio, "/llm")
    c.send(wse.TextMessage(data=json.dumps(AUTH)))
    assert json.loads(c.text()) == {"success": True}
    c.send(wse.TextMessage(data=json.dumps({"type": "rpcCall", "endpoint": "listLoaded", "callId": 1})))
    reply = json.loads(c.text())
    assert reply["type"] == "rpcResult" and reply["callId"] == 1 and isinstance(reply["result"], list)
    # Fragmented with wsproto's own framing.
    call = json.dumps({"type": "rpcCall", "endpoint": "listLoaded", "callId": 2})
    c.send(wse.TextMessage(data=call[:7], message_finished=False))
    c.send(wse.TextMessage(data=call[7:], message_finished=True))
    assert json.loads(c.text())["callId"] == 2
    c.send(wse.Ping(payload=b"p1"))
    e = c.next_event()
    assert isinstance(e, wse.Pong) and e.payload == b"p1"
    c.send(wse.CloseConnection(code=1000, reason="bye"))
    e = c.next_event()
    assert isinstance(e, wse.CloseConnection) and e.code == 1000
    # The server closes the TCP connection after the handshake.
    assert c.sock.recv(10) == b""
    c.sock.close()


def test_wsproto_client_invalid_utf8_closes_with_1007(wm):
    c = WsprotoClient(wm.lmstudio, "/llm")
    c.send(wse.TextMessage(data=json.dumps(AUTH)))
    c.text()
    # wsproto refuses to encode invalid text, so the frame is written by hand: masked, FIN, text.
    c.sock.sendall(frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"))
    e = c.next_event()
    assert isinstance(e, wse.CloseConnection) and e.code == 1007
    c.sock.close()


# --- raw frames -----------------------------------------------------------------------------------------

def frame(opcode, payload, fin=True, mask=True):
    head = bytes([(0x80 if fin else 0) | opcode])
    key = os.urandom(4) if mask else b""
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if mask else payload
    return head + key + body


def raw_connect(port, path="/llm"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return s


def test_an_unmasked_client_frame_closes_with_1002(wm):
    s = raw_connect(wm.lmstudio)
    s.sendall(frame(0x1, json.dumps(AUTH).encode(), mask=False))
    data = s.recv(64)
    assert data[0] == 0x88 and struct.unpack(">H", data[2:4])[0] == 1002
    s.close()


def test_a_client_that_vanishes_mid_message_leaves_nothing_behind(wm):
    before = open_fds(wm)
    for _ in range(20):
        s = raw_connect(wm.lmstudio)
        whole = frame(0x1, json.dumps(AUTH).encode())
        s.sendall(whole[: len(whole) // 2])
        s.close()
    deadline = time.time() + 5
    while open_fds(wm) > before and time.time() < deadline:
        time.sleep(0.05)
    assert open_fds(wm) <= before, "every vanished connection's socket was closed"
    # And the port still serves.
    with wsclient.connect(wm.ws + "/system") as ws:
        ws.send(json.dumps(AUTH))
        assert json.loads(ws.recv(timeout=5)) == {"success": True}


def test_a_plain_get_on_a_namespace_is_426_in_json(wm):
    import urllib.request, urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{wm.lmstudio}/llm", timeout=5)
    assert e.value.code == 426 and e.value.headers["Upgrade"] == "websocket" and e.value.headers["Sec-WebSocket-Version"] == "13"
    assert "WebSocket" in json.loads(e.value.read())["error"]["message"]
