"""A fast fake OpenAI upstream for the benchmark.

A raw asyncio protocol (uvloop when installed) speaking just enough HTTP/1.1
for the benchmark: keep-alive, pipelining, Content-Length or chunked request
bodies.  It answers

  POST /v1/chat/completions   a chat.completion JSON with usage, or, when
                              "stream": true, an SSE stream of 20 content
                              chunks, a finish chunk, a usage chunk (when
                              stream_options.include_usage) and data: [DONE],
                              each chunk written to the socket as it is made;
  GET  /v1/models             the one model list;
  GET  /health                200;
  GET  /stats                 {"chat": N, "stream": M}: chat completions
                              answered so far by this process.

Anything else gets an OpenAI error object with 404.

Per-chunk delay: --chunk-delay-ms N for every stream, or per request with a
model name containing "delayN" (for example "bench-model-delay10"), so a
gateway config can point a second public model at a slow stream on the same
upstream.  With no delay the whole stream is written in one go, one write per
chunk.

It is deliberately tiny so that it is never the bottleneck: one process does
well over ten thousand non-streaming requests a second on one core (see
bench/README.md).  --workers N forks N processes sharing the port
(SO_REUSEPORT).

Usage: python bench/fake_upstream.py --port 18000 [--host 127.0.0.1]
       [--chunk-delay-ms 0] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
import socket
import sys
import time

try:  # orjson is faster, json is enough
    import orjson

    _loads = orjson.loads
    _dumps = orjson.dumps
except ImportError:  # pragma: no cover
    import json

    _loads = json.loads

    def _dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()


N_CHUNKS = 20
TOKENS = [f"tok{i} " for i in range(N_CHUNKS)]
CONTENT = "".join(TOKENS)
PROMPT_TOKENS = 12
COMPLETION_TOKENS = N_CHUNKS
FINGERPRINT = "fp_bench"
_DELAY_RE = re.compile(r"delay(\d+)")
_ids = itertools.count(1)
_PID = os.getpid()
# chat completions answered by this process (GET /stats), so the harness can
# divide a proxy's CPU time by the requests that really went through it
STATS = {"chat": 0, "stream": 0}


def usage_obj() -> dict:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_body(rid: str, model: str, created: int) -> bytes:
    return _dumps(
        {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": CONTENT,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage_obj(),
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
    )


def _chunk(rid: str, model: str, created: int, choices: list, usage, with_usage_field: bool) -> dict:
    c = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    }
    if with_usage_field:
        c["usage"] = usage
    return c


def stream_events(rid: str, model: str, created: int, include_usage: bool) -> list[bytes]:
    """The SSE events of one stream, each already framed as an HTTP chunk."""
    events = []
    for i, tok in enumerate(TOKENS):
        delta = {"content": tok}
        if i == 0:
            delta = {"role": "assistant", "content": tok, "refusal": None}
        events.append(
            _chunk(
                rid, model, created, [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}], None, include_usage
            )
        )
    events.append(
        _chunk(rid, model, created, [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}], None, include_usage)
    )
    if include_usage:
        events.append(_chunk(rid, model, created, [], usage_obj(), True))
    out = [_frame(b"data: " + _dumps(e) + b"\n\n") for e in events]
    out.append(_frame(b"data: [DONE]\n\n"))
    return out


def _frame(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


# Stream templates are built once per (model, include_usage) and only the id
# and timestamp are substituted per request, so the upstream stays cheap.
_ID_PLACEHOLDER = "chatcmpl-XXXXXXXXXXXXXXXXXXXXXXXX"
_TS_PLACEHOLDER = 1111111111
_stream_templates: dict[tuple[str, bool], list[bytes]] = {}
_body_templates: dict[str, bytes] = {}


def _stream_for(model: str, include_usage: bool, rid: str, created: int) -> list[bytes]:
    key = (model, include_usage)
    tpl = _stream_templates.get(key)
    if tpl is None:
        tpl = stream_events(_ID_PLACEHOLDER, model, _TS_PLACEHOLDER, include_usage)
        _stream_templates[key] = tpl
    rb = rid.encode()
    cb = str(created).encode()
    idp = _ID_PLACEHOLDER.encode()
    tsp = str(_TS_PLACEHOLDER).encode()
    # ids have the same length as the placeholder, so chunk sizes don't change
    return [t.replace(idp, rb).replace(tsp, cb) for t in tpl]


def _body_for(model: str, rid: str, created: int) -> bytes:
    tpl = _body_templates.get(model)
    if tpl is None:
        tpl = completion_body(_ID_PLACEHOLDER, model, _TS_PLACEHOLDER)
        _body_templates[model] = tpl
    return tpl.replace(_ID_PLACEHOLDER.encode(), rid.encode()).replace(str(_TS_PLACEHOLDER).encode(), str(created).encode())


def _new_id() -> str:
    return "chatcmpl-%010d%014d" % (_PID % 10**10, next(_ids) % 10**14)


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _error(status: int, message: str, typ: str = "invalid_request_error", code=None) -> tuple[int, bytes]:
    return status, _dumps({"error": {"message": message, "type": typ, "param": None, "code": code}})


class UpstreamProtocol(asyncio.Protocol):
    chunk_delay_s = 0.0

    __slots__ = ("transport", "buf", "busy", "closed")

    def __init__(self) -> None:
        self.transport = None
        self.buf = bytearray()
        self.busy = False
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._process()

    # -- HTTP parsing -----------------------------------------------------
    def _process(self) -> None:
        while not self.busy and not self.closed:
            buf = self.buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._respond(*_error(400, "headers too large"), keep_alive=False)
                return
            head = bytes(buf[:end]).split(b"\r\n")
            try:
                method, target, version = head[0].split(b" ", 2)
            except ValueError:
                self._respond(*_error(400, "bad request line"), keep_alive=False)
                return
            clen = 0
            chunked = False
            keep_alive = version == b"HTTP/1.1"
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    clen = int(value.strip())
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    v = value.strip().lower()
                    if v == b"close":
                        keep_alive = False
                    elif v == b"keep-alive":
                        keep_alive = True
            start = end + 4
            if chunked:
                body, consumed = _dechunk(buf, start)
                if body is None:
                    return  # need more data
                del buf[:consumed]
            else:
                if len(buf) - start < clen:
                    return
                body = bytes(buf[start : start + clen])
                del buf[: start + clen]
            self._handle(method, target, body, keep_alive)

    # -- routing -----------------------------------------------------------
    def _handle(self, method: bytes, target: bytes, body: bytes, keep_alive: bool) -> None:
        path = target.split(b"?", 1)[0]
        if path.endswith(b"/chat/completions"):
            if method != b"POST":
                self._respond(*_error(405, "method not allowed"), keep_alive=keep_alive)
                return
            try:
                req = _loads(body)
                model = req["model"]
                if not isinstance(model, str) or not isinstance(req.get("messages"), list):
                    raise ValueError
            except Exception:
                self._respond(*_error(400, "invalid JSON body: need model and messages"), keep_alive=keep_alive)
                return
            rid = _new_id()
            created = int(time.time())
            STATS["chat"] += 1
            if req.get("stream"):
                STATS["stream"] += 1
                so = req.get("stream_options") or {}
                events = _stream_for(model, bool(so.get("include_usage")), rid, created)
                delay = self.chunk_delay_s
                m = _DELAY_RE.search(model)
                if m:
                    delay = int(m.group(1)) / 1000.0
                self._stream(events, delay, keep_alive)
            else:
                self._respond(200, _body_for(model, rid, created), keep_alive=keep_alive)
        elif path == b"/stats":
            self._respond(200, _dumps(STATS), keep_alive=keep_alive)
        elif path == b"/health" or path == b"/health/live":
            self._respond(200, b'{"status":"ok"}', keep_alive=keep_alive)
        elif path.endswith(b"/models"):
            self._respond(
                200,
                _dumps({"object": "list", "data": [{"id": "bench-model", "object": "model", "created": 0, "owned_by": "bench"}]}),
                keep_alive=keep_alive,
            )
        else:
            self._respond(
                *_error(404, f"unknown path {path.decode(errors='replace')}", code="unknown_url"), keep_alive=keep_alive
            )

    def _respond(self, status: int, body: bytes, keep_alive: bool = True, ctype: bytes = b"application/json") -> None:
        t = self.transport
        t.write(
            b"HTTP/1.1 %d %b\r\nContent-Type: %b\r\nContent-Length: %d\r\n"
            b"x-request-id: bench\r\nopenai-processing-ms: 0\r\n%b\r\n%b"
            % (status, _REASONS.get(status, b"Error"), ctype, len(body), b"" if keep_alive else b"Connection: close\r\n", body)
        )
        if not keep_alive:
            self.closed = True
            t.close()

    _STREAM_HEAD = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n"
        b"x-request-id: bench\r\nopenai-processing-ms: 0\r\n"
    )

    def _stream(self, events: list[bytes], delay: float, keep_alive: bool) -> None:
        t = self.transport
        t.write(self._STREAM_HEAD + (b"\r\n" if keep_alive else b"Connection: close\r\n\r\n"))
        if delay <= 0:
            w = t.write
            for ev in events:
                w(ev)
            w(b"0\r\n\r\n")
            if not keep_alive:
                self.closed = True
                t.close()
            return
        self.busy = True
        asyncio.get_running_loop().create_task(self._stream_slow(events, delay, keep_alive))

    async def _stream_slow(self, events: list[bytes], delay: float, keep_alive: bool) -> None:
        t = self.transport
        try:
            for i, ev in enumerate(events):
                if self.closed or t.is_closing():
                    return
                if i:
                    await asyncio.sleep(delay)
                t.write(ev)
            if not t.is_closing():
                t.write(b"0\r\n\r\n")
            if not keep_alive:
                self.closed = True
                t.close()
        finally:
            self.busy = False
        if self.buf and not self.closed:
            self._process()


def _dechunk(buf: bytearray, pos: int):
    """Decode a chunked body starting at pos. Return (body, bytes consumed) or (None, 0)."""
    out = bytearray()
    n = len(buf)
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None, 0
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            # skip trailers up to the empty line
            end = buf.find(b"\r\n", pos)
            while end >= 0 and end != pos:
                pos = end + 2
                end = buf.find(b"\r\n", pos)
            if end < 0:
                return None, 0
            return bytes(out), end + 2
        if n < pos + size + 2:
            return None, 0
        out += buf[pos : pos + size]
        pos += size + 2


def _make_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(4096)
    s.setblocking(False)
    return s


def serve(sock: socket.socket) -> None:
    try:
        import uvloop  # type: ignore

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(UpstreamProtocol, sock=sock, backlog=4096)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18000)
    ap.add_argument(
        "--chunk-delay-ms", type=float, default=0.0, help="sleep between stream chunks (default 0: write them all at once)"
    )
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    args = ap.parse_args(argv)
    UpstreamProtocol.chunk_delay_s = args.chunk_delay_ms / 1000.0

    if args.workers <= 1:
        sock = _make_socket(args.host, args.port, reuse_port=False)
        print(f"fake upstream listening on http://{args.host}:{args.port}/v1 (pid {os.getpid()})", flush=True)
        serve(sock)
        return

    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            global _PID
            _PID = os.getpid()
            serve(_make_socket(args.host, args.port, reuse_port=True))
            os._exit(0)
        children.append(pid)
    print(f"fake upstream listening on http://{args.host}:{args.port}/v1 ({args.workers} workers, pid {os.getpid()})", flush=True)

    def _term(signum, frame):
        for c in children:
            try:
                os.kill(c, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    for c in children:
        try:
            os.waitpid(c, 0)
        except ChildProcessError:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
