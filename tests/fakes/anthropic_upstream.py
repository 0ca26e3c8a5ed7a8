"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 speaking the exact wire format.

It answers POST /v1/messages as JSON or as the SSE event sequence Anthropic
sends (message_start, content_block_start, ping, content_block_delta with
text_delta / input_json_delta / thinking_delta / signature_delta,
content_block_stop, message_delta, message_stop). Like the real API it
refuses, with Anthropic-shaped 400s: a missing or wrong key or version,
unknown top-level fields, a missing max_tokens, a "system" role in messages,
roles that do not alternate starting with user, empty content, tool_use
without its tool_result right after, and malformed blocks. It records every
request and runs in a thread with its own loop, so a test drives it directly
while the gateway runs as a separate process.

Faults (consumed one per request, in order):
    {"status": 529, "type": "overloaded_error"}       an Anthropic error body (message optional)
    {"status": 429, "type": "rate_limit_error", "headers": {"retry-after": "7"}}
    {"error_event_after": 2, "type": "overloaded_error"}  HTTP 200, then an `error` event after 2 deltas
    {"drop_after": 2}                                  a stream cut after 2 deltas (no message_stop)
    {"hang_s": 5}                                      wait before answering
    {"not_json": True}                                 a 200 whose body is not JSON
    {"echo_key": True}                                 a 401 (before the key check) repeating the received key,
                                                       whole and masked ("sk-ant-a***wxyz")
    {"echo_key": "stream"}                             the same words in an `error` event after message_start
    {"first_event_delay_s": 2}                         a stream: headers at once, message_start 2 s later
    {"gap_after": 2, "gap_s": 3}                       a stream that goes silent for 3 s after 2 deltas
    {..., "keepalive_s": 0.2}                          while waiting (the two above), a ping event every 0.2 s
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import ThreadedServer

UPSTREAM_KEY = "sk-ant-upstream-test-key-0123456789"
VERSION = "2023-06-01"

_TOP_LEVEL = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "output_config",
        "cache_control",
        "mcp_servers",
        "context_management",
        "inference_geo",
    }
)
_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
# Sent on every answer, as Anthropic does; the gateway must not pass them on raw.
RATE_LIMIT_HEADERS = {
    "anthropic-ratelimit-requests-limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "anthropic-ratelimit-requests-reset": "2026-11-27T02:10:00Z",
    "anthropic-ratelimit-tokens-limit": "40000",
    "anthropic-ratelimit-tokens-remaining": "39000",
    "anthropic-ratelimit-tokens-reset": "2026-11-27T02:10:00Z",
}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(id_: str, name: str, input_: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": input_}


def thinking(value: str, signature: str = "sig-fake-0001") -> dict[str, Any]:
    return {"type": "thinking", "thinking": value, "signature": signature}


@dataclass
class Reply:
    """The Message the fake answers with, scriptable per test."""

    content: list[dict[str, Any]] = field(default_factory=lambda: [text("Hello from the fake Anthropic upstream.")])
    stop_reason: str = "end_turn"
    stop_sequence: str | None = None
    input_tokens: int = 21
    output_tokens: int = 9
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    # Newer APIs restate input and cache counts in message_delta; the gateway must not add them twice.
    restate_usage_in_delta: bool = False
    text_piece: int = 6  # characters per text_delta
    json_piece: int = 7  # characters per input_json_delta
    chunk_delay_s: float = 0.0
    # A pause between message_stop and the end of the body: a client that stops reading at
    # message_stop then drops the connection instead of returning it to the pool.
    eof_delay_s: float = 0.0
    # A recorded SSE text to replay verbatim instead of building events.
    raw_sse: str | None = None

    def usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": self.output_tokens,
            "service_tier": "standard",
        }


def error_body(etype: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake_0001"}


def message_for(reply: Reply, model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake_0001",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": reply.usage(),
    }


def _pieces(value: str, size: int) -> list[str]:
    return [value[k : k + size] for k in range(0, len(value), size)] or [""]


def stream_events(reply: Reply, model: str) -> list[dict[str, Any]]:
    """The SSE events Anthropic sends for a reply, in order (each event's `type` is its SSE name)."""
    start = message_for(reply, model)
    start = {**start, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**reply.usage(), "output_tokens": 1}  # the placeholder Anthropic sends
    events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(reply.content):
        btype = block["type"]
        if btype == "text":
            events.append({"type": "content_block_start", "index": index, "content_block": text("")})
            deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], reply.text_piece)]
        elif btype == "thinking":
            events.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                }
            )
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(block["thinking"], reply.text_piece)]
            deltas.append({"type": "signature_delta", "signature": block.get("signature", "sig")})
        elif btype == "tool_use":
            events.append({"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}})
            raw = orjson.dumps(block["input"]).decode()
            # Anthropic opens tool input with an empty fragment, then sends it in pieces.
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [{"type": "input_json_delta", "partial_json": p} for p in _pieces(raw, reply.json_piece)]
        else:
            raise ValueError(f"fake cannot stream block type {btype}")
        if index == 0:
            events.append({"type": "ping"})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    delta_usage: dict[str, Any] = {"output_tokens": reply.output_tokens}
    if reply.restate_usage_in_delta:
        delta_usage.update(
            input_tokens=reply.input_tokens,
            cache_creation_input_tokens=reply.cache_creation_input_tokens,
            cache_read_input_tokens=reply.cache_read_input_tokens,
        )
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence},
            "usage": delta_usage,
        }
    )
    events.append({"type": "message_stop"})
    return events


def sse_text(events: list[dict[str, Any]]) -> str:
    return "".join(f"event: {e['type']}\ndata: {orjson.dumps(e).decode()}\n\n" for e in events)


class Invalid(Exception):
    """A request the real API would refuse with 400 invalid_request_error."""


def _check_blocks(content: Any, where: str, role: str) -> None:
    if isinstance(content, str):
        if not content:
            raise Invalid(f"{where}: all messages must have non-empty content except for the optional final assistant message")
        return
    if not isinstance(content, list) or not content:
        raise Invalid(f"{where}: all messages must have non-empty content except for the optional final assistant message")
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text":
            if not isinstance(block.get("text"), str) or not block["text"]:
                raise Invalid("messages: text content blocks must be non-empty")
        elif btype == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64":
                if source.get("media_type") not in _MEDIA_TYPES or not source.get("data"):
                    raise Invalid(f"{at}.image.source.base64: invalid media_type or data")
            elif source.get("type") == "url":
                if not str(source.get("url", "")).startswith(("http://", "https://")):
                    raise Invalid(f"{at}.image.source.url: invalid url")
            else:
                raise Invalid(f"{at}.image.source: Input tag does not match any of the expected tags")
        elif btype == "document":
            if (block.get("source") or {}).get("media_type") != "application/pdf":
                raise Invalid(f"{at}.document.source: invalid source")
        elif btype == "tool_use":
            if role != "assistant":
                raise Invalid(f"{at}: tool_use blocks can only be in assistant messages")
            if not isinstance(block.get("input"), dict) or not block.get("id") or not block.get("name"):
                raise Invalid(f"{at}.tool_use: id, name and an object input are required")
        elif btype == "tool_result":
            if role != "user":
                raise Invalid(f"{at}: tool_result blocks can only be in user messages")
        elif btype == "thinking":
            # Replayed thinking must carry the signature Anthropic issued (this fake's start with "sig").
            if role != "assistant" or not str(block.get("signature", "")).startswith("sig"):
                raise Invalid(f"{at}.thinking.signature: Invalid `signature` in `thinking` block")
        else:
            raise Invalid(f"{at}: Input tag '{btype}' found using 'type' does not match any of the expected tags")
        extra = set(block) - {
            "type",
            "text",
            "source",
            "id",
            "name",
            "input",
            "tool_use_id",
            "content",
            "is_error",
            "cache_control",
            "title",
            "citations",
            "context",
            "thinking",
            "signature",
        }
        if extra:
            raise Invalid(f"{at}.{min(extra)}: Extra inputs are not permitted")


def validate(body: Any) -> None:
    """Anthropic's documented request rules, as the real API enforces them."""
    if not isinstance(body, dict):
        raise Invalid("Input should be an object")
    for key in body:
        if key not in _TOP_LEVEL:
            raise Invalid(f"{key}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise Invalid("model: Field required")
    if "max_tokens" not in body:
        raise Invalid("max_tokens: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        raise Invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
    system = body.get("system")
    if (
        system is not None
        and not isinstance(system, str)
        and (
            not isinstance(system, list)
            or any(not isinstance(b, dict) or b.get("type") != "text" or not b.get("text") for b in system)
        )
    ):
        raise Invalid("system: Input should be a valid string or a list of non-empty text blocks")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: Field required")
    previous_tool_ids: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            raise Invalid(
                'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                'not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise Invalid('messages: first message must use the "user" role')
        if i > 0 and messages[i - 1].get("role") == role:
            raise Invalid(
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row'
            )
        content = message.get("content")
        _check_blocks(content, f"messages.{i}", role)
        blocks = content if isinstance(content, list) else []
        results = {b["tool_use_id"] for b in blocks if b.get("type") == "tool_result"}
        unknown = results - previous_tool_ids
        if unknown:
            raise Invalid(
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: {min(unknown)}. "
                "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
            )
        missing = previous_tool_ids - results
        if missing:
            raise Invalid(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {min(missing)}"
            )
        previous_tool_ids = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    if previous_tool_ids:
        raise Invalid("messages: the final assistant message has `tool_use` blocks without `tool_result` blocks")
    tools = body.get("tools") or []
    names = set()
    for k, tool in enumerate(tools):
        if not _TOOL_NAME.match(str(tool.get("name", ""))):
            raise Invalid(f"tools.{k}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        if re.fullmatch(r"[a-z_]+_\d{8}", str(tool.get("type", ""))):
            names.add(tool["name"])  # a server tool (web_search_20250305, …): Anthropic runs it
            continue
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"tools.{k}.custom.input_schema.type: Input should be 'object'")
        # Documented custom-tool fields (defer_loading: tool search; strict; input_examples …) besides the basics.
        extra = set(tool) - {
            "name",
            "description",
            "input_schema",
            "cache_control",
            "type",
            "defer_loading",
            "strict",
            "input_examples",
            "eager_input_streaming",
            "allowed_callers",
        }
        if extra:
            raise Invalid(f"tools.{k}.custom.{min(extra)}: Extra inputs are not permitted")
        names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice: Input tag does not match any of the expected tags")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise Invalid(f"tool_choice.tool.name: Tool '{choice.get('name')}' not found in provided tools")
        if choice["type"] == "none" and "disable_parallel_tool_use" in choice:
            raise Invalid("tool_choice.none.disable_parallel_tool_use: Extra inputs are not permitted")
    for key in ("temperature", "top_p"):
        if key in body and not (isinstance(body[key], (int, float)) and 0 <= body[key] <= 1):
            raise Invalid(f"{key}: Input should be less than or equal to 1")
    metadata = body.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or set(metadata) - {"user_id"}):
        raise Invalid("metadata: only user_id is permitted")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise Invalid("stop_sequences: Input should be a valid list of strings")
    think = body.get("thinking")
    if think is not None and think.get("type") == "enabled":
        budget = think.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            raise Invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if body["max_tokens"] <= budget:
            raise Invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
        if choice is not None and choice.get("type") in ("any", "tool"):
            raise Invalid("Thinking may not be enabled when tool_choice forces tool use.")


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any
    client_port: int | None = None  # the same port twice means a reused connection


@dataclass
class FakeAnthropic:
    api_key: str = UPSTREAM_KEY
    reply: Reply = field(default_factory=Reply)
    faults: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    port: int = 0
    completed: int = 0  # streamed responses sent to their end

    def __post_init__(self) -> None:
        self._server = ThreadedServer(self._routes, "fake-anthropic")

    # --- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The api_base to configure (the provider appends /v1/messages)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeAnthropic":
        self.port = self._server.start(self.port)
        return self

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        self.reply = Reply()
        self.faults.clear()
        self.requests.clear()
        self.completed = 0

    @property
    def last(self) -> Any:
        """The body of the last request."""
        return self.requests[-1].body

    # --- answers --------------------------------------------------------------------

    @staticmethod
    def _error(status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            status=status,
            body=orjson.dumps(error_body(etype, message)),
            content_type="application/json",
            headers={"request-id": "req_fake_0001", **RATE_LIMIT_HEADERS, **(headers or {})},
        )

    @staticmethod
    async def _pause(resp: web.StreamResponse, seconds: float | None, keepalive_s: float | None) -> None:
        """Wait (a stalled upstream), optionally sending ping events meanwhile (one that is alive)."""
        if not seconds:
            return
        if not keepalive_s:
            await asyncio.sleep(seconds)
            return
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(keepalive_s, left))
            await resp.write(sse_text([{"type": "ping"}]).encode())

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        """A deterministic count (one token per 3 bytes of messages, system and tools, plus 7)."""
        body = orjson.loads(await request.read())
        self.requests.append(Seen(request.path, dict(request.headers), body))
        if request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        extra = set(body) - {
            "model",
            "messages",
            "system",
            "tools",
            "tool_choice",
            "thinking",
            "mcp_servers",
            "context_management",
            "output_config",
        }
        if extra:
            return self._error(400, "invalid_request_error", f"{min(extra)}: Extra inputs are not permitted")
        counted = orjson.dumps([body.get("messages"), body.get("system"), body.get("tools")])
        return web.json_response({"input_tokens": len(counted) // 3 + 7})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(Seen(request.path, dict(request.headers), body, peer[1] if peer else None))
        echo = self.faults[0].get("echo_key") if self.faults else None
        if echo:
            self.faults.pop(0)
            key = request.headers.get("x-api-key", "")
            message = f"invalid x-api-key {key[:8]}***{key[-4:]} (received {key})"
            if echo is True:
                return self._error(401, "authentication_error", message)
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **RATE_LIMIT_HEADERS})
            await resp.prepare(request)
            start = stream_events(self.reply, (body or {}).get("model", "m"))[0]
            await resp.write(sse_text([start, error_body("authentication_error", message)]).encode())
            await resp.write_eof()
            return resp
        if request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        if request.headers.get("anthropic-version") != VERSION:
            return self._error(400, "invalid_request_error", "anthropic-version: header is required and must be 2023-06-01")
        try:
            validate(body)
        except Invalid as err:
            return self._error(400, "invalid_request_error", str(err))
        fault = self.faults.pop(0) if self.faults else {}
        if "hang_s" in fault:
            await asyncio.sleep(fault["hang_s"])
        if "status" in fault:
            status = fault["status"]
            etype = fault.get("type", "api_error")
            return self._error(status, etype, fault.get("message", f"fake {etype}"), fault.get("headers"))
        if fault.get("not_json"):
            return web.Response(status=200, text="<html>oops</html>", content_type="text/html")
        reply = self.reply
        if not body.get("stream"):
            return web.Response(
                body=orjson.dumps(message_for(reply, body["model"])),
                content_type="application/json",
                headers={"request-id": "req_fake_0001", **RATE_LIMIT_HEADERS},
            )
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "request-id": "req_fake_0001",
                **RATE_LIMIT_HEADERS,
            }
        )
        await resp.prepare(request)
        await self._pause(resp, fault.get("first_event_delay_s"), fault.get("keepalive_s"))
        if reply.raw_sse is not None:
            await resp.write(reply.raw_sse.encode())
            await resp.write_eof()
            return resp
        deltas = 0
        for event in stream_events(reply, body["model"]):
            if event["type"] == "content_block_delta":
                if deltas == fault.get("error_event_after"):
                    etype = fault.get("type", "overloaded_error")
                    await resp.write(sse_text([error_body(etype, fault.get("message", "Overloaded"))]).encode())
                    await resp.write_eof()
                    return resp
                if deltas == fault.get("drop_after"):
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                deltas += 1
            await resp.write(sse_text([event]).encode())
            if event["type"] == "content_block_delta" and deltas == fault.get("gap_after"):
                await self._pause(resp, fault.get("gap_s"), fault.get("keepalive_s"))
            if reply.chunk_delay_s:
                await asyncio.sleep(reply.chunk_delay_s)
        if reply.eof_delay_s:
            await asyncio.sleep(reply.eof_delay_s)
        await resp.write_eof()
        self.completed += 1
        return resp
