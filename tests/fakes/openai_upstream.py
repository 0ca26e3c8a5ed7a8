"""A fake OpenAI API: a real HTTP server on 127.0.0.1 speaking the exact wire format.

It answers /v1/chat/completions (JSON and SSE with the usage chunk),
/v1/completions, /v1/embeddings, /v1/models and /v1/responses (openai_responses.py:
JSON and SSE, stored responses for previous_response_id), records every request, and
injects faults on demand. It runs in a thread with its own event loop, so a
test drives it directly (``fake.faults.append(...)``) while the gateway under
test runs as a separate process.

Faults (consumed one per request, in order):
    {"status": 500}                          an OpenAI-shaped error (message/type/code optional)
    {"status": 429, "headers": {"retry-after": "1"}}
    {"hang_s": 5}                            wait before answering
    {"close": True}                          drop the connection without an answer
    {"drop_after": 3}                        a stream that breaks after 3 content chunks
    {"end_after": 3}                         a stream that ends cleanly after 3 content chunks, with
                                             no finish reason, usage chunk or [DONE]
    {"error_after": 3}                       a stream that sends an error event after 3 content chunks
                                             (as OpenAI does mid-stream), then ends; "error" overrides it
    {"no_done": True}                        a complete stream (finish reason, usage) without [DONE]
    {"not_json": True}                       a 200 whose body is not JSON
    {"echo_key": True}                       a 401 (before the key check) repeating the received key,
                                             whole and masked as OpenAI does ("gsk_abc***wxyz")
    {"echo_key": "stream"}                   the same words in an error event after one chunk of a 200 stream
    {"body_delay_s": 2}                      a non-streamed answer: headers at once, the body 2 s later
    {"first_event_delay_s": 2}               a stream: headers at once, its first event 2 s later
    {"gap_after": 2, "gap_s": 3}             a stream that goes silent for 3 s after 2 content chunks
                                             (gap_after 0: after the role chunk, before any content)
    {..., "keepalive_s": 0.2}                while waiting (the two above), an SSE comment every 0.2 s
    {"huge": 3_000_000}                      an answer whose content is that many characters: a non-streamed
                                             one with Content-Length, a stream in 16 KiB content chunks
    {"huge": 3_000_000, "chunked": True}     the same non-streamed answer without Content-Length (chunked)
    {"huge": 3_000_000, "gzip": True}        the same, gzip-compressed (a small Content-Length, a big body)
    {"huge": 300_000, "one_event": True}     a stream whose content comes in a single SSE event (one long line)
    {"stall_after": 1}                       a stream that sends 1 content chunk, then nothing more, ever:
                                             it waits for the connection to close (at most 30 s)
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_responses import ResponsesEndpoint
from tests.fakes.server import ThreadedServer

UPSTREAM_KEY = "sk-upstream-test-key-0123456789"
# The event OpenAI sends when an answer fails after its stream has started.
MID_STREAM_ERROR = {
    "message": "The server had an error while processing your request. Sorry about that!",
    "type": "server_error",
    "param": None,
    "code": None,
}


def echo_key_message(request: web.Request) -> str:
    """What a careless upstream says about a bad key: the key whole, and masked as OpenAI masks it."""
    auth = request.headers.get("Authorization", "")
    key = auth.removeprefix("Bearer ") or request.headers.get("api-key", "")
    masked = f"{key[:7]}***{key[-4:]}"
    return f"Incorrect API key provided: {masked}. The key {key} is not valid for this organization."


@dataclass
class Reply:
    """What the fake answers, scriptable per test."""

    content: str | None = "Hello from the fake upstream."
    tool_calls: list[dict[str, Any]] | None = None
    prompt_tokens: int = 9
    completion_tokens: int = 7
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    chunk_delay_s: float = 0.0
    # Reasoning text as DeepSeek/vLLM-style servers send it (`reasoning_content`), before the answer.
    reasoning: str | None = None
    # Parallel tool calls: every call's head first, then their 8-character argument deltas
    # round-robin (index 0, 1, 0, 1, ...), as some servers interleave; else one call after another.
    interleave_tools: bool = False


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeOpenAI:
    api_key: str = UPSTREAM_KEY
    reply: Reply = field(default_factory=Reply)
    faults: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    # Set by a test to hold a stream after its first content chunk until released.
    hold_after_first: threading.Event | None = None
    # Replies for successive chat requests that offer tools (an agent's turns); `reply` otherwise.
    script: list[Reply] = field(default_factory=list)
    disconnects: int = 0
    port: int = 0
    # /v1/responses: each request's whole conversation (previous turns resolved), oldest first.
    conversations: list[list[dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = ThreadedServer(self._routes, "fake-openai")
        self.stream_closed = threading.Event()
        self.responses = ResponsesEndpoint(self)

    # --- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAI":
        self.port = self._server.start(self.port)
        return self

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/responses", self.responses.handle)
        app.router.add_delete("/v1/responses/{response_id}", self.responses.delete)

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        self.reply = Reply()
        self.faults.clear()
        self.requests.clear()
        self.hold_after_first = None
        self.script.clear()
        self.disconnects = 0
        self.stream_closed.clear()
        self.conversations.clear()
        self.responses.reset()

    # --- helpers --------------------------------------------------------------------

    @staticmethod
    def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
        return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})

    async def _intake(self, request: web.Request) -> tuple[Any, web.StreamResponse | None, dict[str, Any] | None]:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(Seen(request.path, dict(request.headers), body))
        if self.faults and self.faults[0].get("echo_key") is True:
            self.faults.pop(0)
            return (
                body,
                web.Response(
                    status=401,
                    body=self.error_body(echo_key_message(request), "invalid_request_error", "invalid_api_key"),
                    content_type="application/json",
                ),
                None,
            )
        if self.faults and self.faults[0].get("echo_key") == "stream":
            return body, None, self.faults.pop(0)
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return (
                body,
                web.Response(
                    status=401,
                    body=self.error_body("Incorrect API key provided: sk-up***.", "invalid_request_error", "invalid_api_key"),
                    content_type="application/json",
                ),
                None,
            )
        if body is None:
            return (
                body,
                web.Response(
                    status=400, body=self.error_body("bad json", "invalid_request_error"), content_type="application/json"
                ),
                None,
            )
        fault = self.faults.pop(0) if self.faults else None
        if fault:
            if "hang_s" in fault:
                await asyncio.sleep(fault["hang_s"])
            if fault.get("close"):
                assert request.transport is not None
                request.transport.close()
                return body, web.Response(status=500), None
            if "status" in fault:
                status = fault["status"]
                return (
                    body,
                    web.Response(
                        status=status,
                        headers=fault.get("headers", {}),
                        body=self.error_body(
                            fault.get("message", f"fake upstream error {status}"),
                            fault.get("type", "server_error" if status >= 500 else "invalid_request_error"),
                            fault.get("code"),
                            fault.get("param"),
                        ),
                        content_type="application/json",
                    ),
                    None,
                )
            if fault.get("not_json"):
                return body, web.Response(status=200, text="<html>oops</html>", content_type="text/html"), None
        return body, None, fault

    def _usage(self) -> dict[str, Any]:
        r = self.reply
        return {
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": r.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": r.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    @staticmethod
    async def _pause(resp: web.StreamResponse, seconds: float | None, keepalive_s: float | None) -> None:
        """Wait (a stalled upstream), optionally sending SSE comments meanwhile (one that is alive)."""
        if not seconds:
            return
        if not keepalive_s:
            await asyncio.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(keepalive_s, left))
            await resp.write(b": keep-alive\n\n")

    @staticmethod
    async def _until_closed(request: web.Request, limit_s: float = 30.0) -> None:
        """Hold a response open, sending nothing, until the client has closed the connection."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end and request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.05)

    async def _send_sse(self, resp: web.StreamResponse, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        await resp.write(b"data: " + data + b"\n\n")

    # --- endpoints ------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, early, fault = await self._intake(request)
        if early is not None:
            return early
        r = self.script.pop(0) if self.script and body.get("tools") else self.reply
        cid, created, model = "chatcmpl-fake0001", int(time.time()), body.get("model")
        finish = "tool_calls" if r.tool_calls else "stop"
        fault = fault or {}
        if "huge" in fault:
            r = Reply(content="x" * fault["huge"], prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens)
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": r.content, "refusal": None, "annotations": []}
            if r.tool_calls:
                message["tool_calls"] = r.tool_calls
            if r.reasoning:
                message["reasoning_content"] = r.reasoning
            answer = web.Response(
                body=orjson.dumps(
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                        "usage": self._usage(),
                        "service_tier": "default",
                        "system_fingerprint": "fp_fake",
                    }
                ),
                content_type="application/json",
                headers={"x-request-id": "req_upstream_1", "x-ratelimit-remaining-requests": "99"},
            )
            if fault.get("chunked") or fault.get("gzip"):
                assert answer.body is not None
                data = gzip.compress(answer.body) if fault.get("gzip") else answer.body  # type: ignore[arg-type]
                headers = {"Content-Type": "application/json"}
                if fault.get("gzip"):
                    headers.update({"Content-Encoding": "gzip", "Content-Length": str(len(data))})
                big = web.StreamResponse(headers=headers)
                if not fault.get("gzip"):
                    big.enable_chunked_encoding()
                await big.prepare(request)
                for k in range(0, len(data), 65536):
                    await big.write(data[k : k + 65536])
                await big.write_eof()
                return big
            if "body_delay_s" not in fault:
                return answer
            assert answer.body is not None
            slow = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(len(answer.body))})
            await slow.prepare(request)  # the headers go now
            await asyncio.sleep(fault["body_delay_s"])
            await slow.write(answer.body)  # type: ignore[arg-type]
            await slow.write_eof()
            return slow
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            c: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                c["usage"] = None
            return c

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            await self._pause(resp, fault.get("first_event_delay_s"), fault.get("keepalive_s"))
            await self._send_sse(resp, chunk({"role": "assistant", "content": "", "refusal": None}))
            if fault and fault.get("echo_key") == "stream":
                await self._send_sse(
                    resp,
                    {
                        "error": {
                            "message": echo_key_message(request),
                            "type": "invalid_request_error",
                            "code": "invalid_api_key",
                            "status": 401,
                        }
                    },
                )
                await resp.write_eof()
                return resp
            if fault and fault.get("gap_after") == 0:
                await self._pause(resp, fault.get("gap_s"), fault.get("keepalive_s"))
            for word in (r.reasoning or "").split(" ") if r.reasoning else []:
                await self._send_sse(resp, chunk({"reasoning_content": word + " "}))
            pieces = (r.content or "").split(" ") if r.content else []
            pieces = [p + " " for p in pieces[:-1]] + pieces[-1:]
            if "huge" in fault:
                size = len(r.content or "") if fault.get("one_event") else 16384
                pieces = [(r.content or "")[k : k + size] for k in range(0, len(r.content or ""), size)]
            fault = fault or {}
            for i, piece in enumerate(pieces):
                if "drop_after" in fault and i >= fault["drop_after"]:
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if "end_after" in fault and i >= fault["end_after"]:
                    await resp.write_eof()
                    return resp
                if "error_after" in fault and i >= fault["error_after"]:
                    await self._send_sse(resp, {"error": fault.get("error", MID_STREAM_ERROR)})
                    await resp.write_eof()
                    return resp
                await self._send_sse(resp, chunk({"content": piece}))
                if i + 1 == fault.get("stall_after"):
                    await self._until_closed(request)
                    return resp
                if i + 1 == fault.get("gap_after"):
                    await self._pause(resp, fault.get("gap_s"), fault.get("keepalive_s"))
                if i == 0 and self.hold_after_first is not None:
                    event = self.hold_after_first
                    await asyncio.get_running_loop().run_in_executor(None, event.wait, 10)
                if r.chunk_delay_s:
                    await asyncio.sleep(r.chunk_delay_s)
            calls = r.tool_calls or []
            heads = [
                {"index": i, "id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": ""}}
                for i, c in enumerate(calls)
            ]
            parts = [[c["function"]["arguments"][k : k + 8] for k in range(0, len(c["function"]["arguments"]), 8)] for c in calls]
            if r.interleave_tools:
                order = [head for head in heads] + [
                    {"index": i, "function": {"arguments": p[n]}}
                    for n in range(max(map(len, parts), default=0))
                    for i, p in enumerate(parts)
                    if n < len(p)
                ]
            else:
                order = [
                    delta
                    for i, head in enumerate(heads)
                    for delta in [head, *({"index": i, "function": {"arguments": part}} for part in parts[i])]
                ]
            for delta in order:
                await self._send_sse(resp, chunk({"tool_calls": [delta]}))
            await self._send_sse(resp, chunk({}, finish))
            if include_usage:
                await self._send_sse(
                    resp,
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": self._usage(),
                    },
                )
            if not fault.get("no_done"):
                await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            self.stream_closed.set()
            raise
        return resp

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, early, _ = await self._intake(request)
        if early is not None:
            return early
        r = self.reply
        cid, created, model = "cmpl-fake0001", int(time.time()), body.get("model")
        usage = {
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
        }
        text = r.content or ""
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
                    "usage": usage,
                },
                dumps=lambda o: orjson.dumps(o).decode(),
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        words = text.split(" ")
        for i, word in enumerate(words):
            piece = word + (" " if i < len(words) - 1 else "")
            await self._send_sse(
                resp,
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}],
                },
            )
        await self._send_sse(
            resp,
            {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            },
        )
        if include_usage:
            await self._send_sse(
                resp, {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [], "usage": usage}
            )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, early, _ = await self._intake(request)
        if early is not None:
            return early
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        dims = body.get("dimensions") or 3
        data = []
        for i, _text in enumerate(inputs):
            vector = [round(0.1 * (i + 1) * (k + 1), 4) for k in range(dims)]
            if body.get("encoding_format") == "base64":
                value: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            else:
                value = vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        return web.json_response(
            {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 4, "total_tokens": 4}},
            dumps=lambda o: orjson.dumps(o).decode(),
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": []})
