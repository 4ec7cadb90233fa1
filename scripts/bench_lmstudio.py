#!/usr/bin/env python3
"""LM Studio's SDK protocol against the OpenAI API, same model, same run: time to the first fragment of a
streamed prediction over the websocket (`predict` on /llm, one connection kept open as the SDKs keep it)
against time to the first content delta of `/v1/chat/completions` with `stream: true` (a kept-alive HTTP
connection), and llama-server's own stream (the runner directly) as the floor. The same short prompt
(max 8 tokens, temperature 0) in alternating order, `--rounds` each after a warm-up. Prints medians and
p99 in ms and the ratios. The websocket client is a minimal RFC 6455 client written here on the standard
library, so what is measured is the server, not a client library. Figures, not assertions.
Usage: python3 scripts/bench_lmstudio.py [--rounds 200] [--markdown FILE]
"""
import argparse, base64, http.client, json, os, socket, statistics, struct, time

from benchlib import MODEL, Mesh, Report, pct, rpc, timed_stream

PROMPT = "Say hello"


class WS:
    """Just enough of a websocket client: masked text frames out, whole messages in."""
    def __init__(self, port, path):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, doc):
        payload = json.dumps(doc).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def recv(self):
        self._need(2)
        n = self.buf[1] & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(off + n)
        data, self.buf = self.buf[off:off + n], self.buf[off + n:]
        return json.loads(data)


def ws_round(ws, channel):
    """One prediction: (time to the first fragment, total) in ms."""
    start = time.perf_counter()
    ws.send({"type": "channelCreate", "endpoint": "predict", "channelId": channel, "creationParameter": {
        "modelSpecifier": {"type": "query", "query": {"identifier": "smol"}},
        "history": {"messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]},
        "predictionConfigStack": {"layers": [{"layerName": "apiOverride", "config": {"fields": [
            {"key": "llm.prediction.maxPredictedTokens", "value": {"checked": True, "value": 8}},
            {"key": "llm.prediction.temperature", "value": 0}]}}]}}})
    first = None
    while True:
        m = ws.recv()
        if m.get("type") == "channelSend" and m["message"]["type"] == "fragment" and first is None:
            first = time.perf_counter()
        if m.get("type") in ("channelClose", "channelError"):
            assert m["type"] == "channelClose", m
            break
    end = time.perf_counter()
    return (first - start) * 1000, (end - start) * 1000


BODY = json.dumps({"model": "smol", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8, "temperature": 0,
                   "stream": True}).encode()


def sse_round(port):
    """One streamed chat completion: (time to the first content delta, total) in ms. A new connection per
    request: llama-server closes its connection after a stream, and the gateway's leg is kept alike."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    try:
        return timed_stream(conn, BODY, content_only=True)
    finally:
        conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    out = Report()
    mesh = Mesh("lr-bench-lms-", {}, {"models": {"smol": {"model_path": MODEL, "parameters": {"ctx_size": 2048}}}})
    try:
        rpc(mesh.runners_socket, "runners.load", {"model": "smol"})
        endpoint = next(r["endpoint"] for r in rpc(mesh.runners_socket, "runners.list") if r["model"] == "smol")
        direct_port = int(endpoint.rsplit(":", 1)[1])
        ws = WS(mesh.lmstudio, "/llm")
        ws.send({"authVersion": 1, "clientIdentifier": "bench", "clientPasskey": "bench"})
        assert ws.recv() == {"success": True}
        legs = {"websocket predict": [], "OpenAI SSE via gateway": [], "llama-server direct SSE": []}
        channel = 0
        for i in range(args.rounds + 10):
            order = list(legs) if i % 2 == 0 else list(reversed(legs))
            for leg in order:
                if leg == "websocket predict":
                    channel += 1
                    r = ws_round(ws, channel)
                elif leg == "OpenAI SSE via gateway":
                    r = sse_round(mesh.lmstudio)
                else:
                    r = sse_round(direct_port)
                if i >= 10:
                    legs[leg].append(r)
        out(f"LM Studio SDK protocol against the OpenAI API (SmolLM2-135M, max 8 tokens, temperature 0, {args.rounds} rounds each, alternating)")
        out("")
        out("| path | first token median | p99 | total median | p99 |")
        out("|---|---:|---:|---:|---:|")
        med = {}
        for leg, rs in legs.items():
            firsts, totals = [a for a, _ in rs], [b for _, b in rs]
            med[leg] = statistics.median(firsts)
            out(f"| {leg} | {statistics.median(firsts):.2f} ms | {pct(firsts, 99):.2f} ms | {statistics.median(totals):.2f} ms | {pct(totals, 99):.2f} ms |")
        out("")
        out(f"first token, websocket / OpenAI SSE through the gateway: {med['websocket predict'] / med['OpenAI SSE via gateway']:.2f}x; "
            f"websocket minus direct: {med['websocket predict'] - med['llama-server direct SSE']:+.2f} ms; "
            f"gateway SSE minus direct: {med['OpenAI SSE via gateway'] - med['llama-server direct SSE']:+.2f} ms")
    finally:
        mesh.stop()
    out.write(args.markdown)


if __name__ == "__main__":
    main()
