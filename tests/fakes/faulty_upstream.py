"""An upstream that misbehaves on the wire: raw HTTP/1.1 over asyncio streams on 127.0.0.1.

aiohttp's server (the other fakes) always sends well-formed HTTP; the faults here need
what it will not do: a content-length longer than the body, a reset in the middle of
one, headers and then nothing, one byte a second. The fault is named by the request's
model (``"model": "not_json"``), so one server stands behind every deployment of a
test; the protocol by the path (``/v1/chat/completions`` OpenAI, ``/v1/messages``
Anthropic). Every answer closes its connection (``connection: close``).

Faults (FAULTS lists them), for both protocols unless said:
    ok               a correct answer (JSON or SSE), usage 9 in / 7 out
    not_json         200 application/json whose body is plain text
    truncated_json   200 application/json, a whole body that is the first half of the JSON
    html             200 text/html, a proxy's error page
    wrong_type       a stream request answered with a JSON completion; a non-stream one with SSE
    short_body       content-length 4096, half the body sent, then the connection closed
    reset            part of the body (a stream: its first events), then a TCP reset
    silence          headers, then nothing until the client gives up
    trickle          a correct stream sent one byte a second
    trickle_late     the first events at once, then the rest one byte a second
    endless          a stream whose content never ends (a chunk every 50 ms)
    malformed        a stream whose second event is not JSON
    malformed_first  a stream whose first event is not JSON
    usage_negative   usage with a negative count (both a JSON answer and a stream's usage)
    usage_string     usage counts as words
    usage_huge       usage past any context window (10**12)
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

FAULTS = (
    "ok",
    "not_json",
    "truncated_json",
    "html",
    "wrong_type",
    "short_body",
    "reset",
    "silence",
    "trickle",
    "trickle_late",
    "endless",
    "malformed",
    "malformed_first",
    "usage_negative",
    "usage_string",
    "usage_huge",
)
TEXT = "Hello from the faulty upstream."
HTML = b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
BAD_USAGE: dict[str, Any] = {"usage_negative": -40, "usage_string": "lots", "usage_huge": 10**12}


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + " " for p in parts[:-1]] + parts[-1:]


def openai_answer(model: str, prompt: Any = 9, completion: Any = 7) -> dict[str, Any]:
    return {
        "id": "chatcmpl-faulty",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 16},
    }


def openai_events(model: str, prompt: Any = 9, completion: Any = 7) -> list[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-faulty",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w}) for w in _words(TEXT)]
    events.append(chunk({}, "stop"))
    usage = {"id": "chatcmpl-faulty", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": []}
    usage["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 16}
    events.append(usage)
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def anthropic_answer(model: str, prompt: Any = 9, completion: Any = 7) -> dict[str, Any]:
    return {
        "id": "msg_faulty",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": completion},
    }


def anthropic_events(model: str, prompt: Any = 9, completion: Any = 7) -> list[bytes]:
    message = {**anthropic_answer(model, prompt, 1), "content": [], "stop_reason": None}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": message}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    for w in _words(TEXT):
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": completion}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [b"event: " + name.encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for name, e in events]


@dataclass
class Seen:
    path: str
    fault: str
    stream: bool


@dataclass
class FaultyUpstream:
    port: int = 0
    requests: list[Seen] = field(default_factory=list)
    # Connections still open (a fault that holds one until the client leaves).
    open_connections: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="faulty-upstream")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FaultyUpstream":
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return int(self._server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        async def close() -> None:
            for w in list(self._writers):
                w.close()
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # --- one connection, one request -------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.open_connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = orjson.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            fault, stream = str(body.get("model")), bool(body.get("stream"))
            self.requests.append(Seen(path, fault, stream))
            anthropic = path.endswith("/messages")
            await self._answer(reader, writer, fault, stream, anthropic)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fault: str, stream: bool, anthropic: bool
    ) -> None:
        model = fault
        bad = BAD_USAGE.get(fault)
        counts: tuple[Any, Any] = (9, bad) if bad is not None else (9, 7)
        answer = (anthropic_answer if anthropic else openai_answer)(model, *counts)
        events = (anthropic_events if anthropic else openai_events)(model, *counts)
        as_json = orjson.dumps(answer)

        def head(status: str = "200 OK", ctype: str = "application/json", length: int | None = None) -> bytes:
            out = f"HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\nconnection: close\r\n"
            if length is not None:
                out += f"content-length: {length}\r\n"
            return (out + "\r\n").encode()

        sse = "text/event-stream"
        if fault in ("ok", *BAD_USAGE) or (fault in ("malformed", "malformed_first") and not stream):
            if stream:
                writer.write(head(ctype=sse) + b"".join(events))
            else:
                writer.write(head(length=len(as_json)) + as_json)
        elif fault == "not_json":
            text = b"Internal error, please retry later."
            writer.write(head(length=len(text)) + text)
        elif fault == "truncated_json":
            half = as_json[: len(as_json) // 2]
            writer.write(head(length=len(half)) + half)
        elif fault == "html":
            writer.write(head(ctype="text/html", length=len(HTML)) + HTML)
        elif fault == "wrong_type":
            if stream:
                writer.write(head(length=len(as_json)) + as_json)
            else:
                data = b"".join(events)
                writer.write(head(ctype=sse, length=len(data)) + data)
        elif fault == "short_body":
            if stream:
                data = b"".join(events)
                writer.write(head(ctype=sse, length=len(data) * 2) + data[: len(data) * 2 // 3])
            else:
                writer.write(head(length=4096) + as_json[: len(as_json) // 2])
        elif fault == "reset":
            writer.write(head(ctype=sse) + b"".join(events[:3]) if stream else head(length=4096) + as_json[:40])
            await writer.drain()
            await asyncio.sleep(0.2)  # let the first events reach the client before the reset
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        elif fault == "silence":
            writer.write(head(ctype=sse if stream else "application/json", length=None if stream else len(as_json)))
            await writer.drain()
            await reader.read()  # until the client closes
            return
        elif fault in ("trickle", "trickle_late"):
            data = b"".join(events)
            start = len(b"".join(events[:2])) if fault == "trickle_late" else 0
            writer.write(head(ctype=sse) + data[:start])
            for i in range(start, len(data)):
                await writer.drain()
                await asyncio.sleep(1.0)
                writer.write(data[i : i + 1])
        elif fault == "endless":
            writer.write(head(ctype=sse) + events[0])
            filler = events[1]
            while True:
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(filler)
        elif fault in ("malformed", "malformed_first"):
            broken = b'data: {"id": "chatcmpl-faulty", "choices": [{"delta": \n\n'
            first = 0 if fault == "malformed_first" else 1
            writer.write(head(ctype=sse) + b"".join(events[:first]) + broken)
            await writer.drain()
            await reader.read()  # hold the rest back: the client must end it
            return
        else:
            raise ValueError(f"unknown fault {fault!r}")
        await writer.drain()
