"""The mock provider: deterministic answers with no upstream, for demos and load tests of client apps.

It answers chat, legacy completions and embeddings in OpenAI's exact shapes,
with configurable latency before the first token and streaming pace, so an
application can be exercised offline through the real gateway.

Chat also plays the two halves of an agent loop and structured output, so tool
and JSON examples run offline (the values come from mock_schema.value_for):
- `tools` given and the last message not a tool result: one call (finish_reason
  "tool_calls"), its arguments generated from the tool's JSON-schema `parameters`,
  to the tool `tool_choice` names; with "required", to the tool the user's last
  message mentions (a word of its name: "weather" for get_weather) or else the
  first; with "auto" (or none given), to the mentioned tool, and text when none
  is mentioned (an agent such as Claude Code sends all its tools every turn: a
  call to the first would start turn after turn); with "none", text;
- the last message(s) a tool result: a text answer that quotes what the tool returned;
- `response_format` json_schema: content is JSON valid against the schema;
  json_object: a JSON object.
A fixed `mock_response` is the answer to everything except a forced tool choice
("required" or a named function), so a demo with a fixed reply stays fixed.
"""

from __future__ import annotations

import array
import asyncio
import base64
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from lockgate.config import MockDeployment
from lockgate.errors import InvalidRequest
from lockgate.providers.base import ProviderResult, Usage, estimate_tokens, openai_usage
from lockgate.providers.mock_schema import key_word, value_for


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _prompt_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        return "\n".join(_text_of(m.get("content")) for m in body["messages"] if isinstance(m, dict))
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(p for p in prompt if isinstance(p, str))


# Context an agent adds to the user's turn (Claude Code's reminders list its tools and agents).
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)


def _last_user_text(body: dict[str, Any]) -> str:
    """What the user last said: the last text of their last message, without an agent's reminders,
    which the echo and the choice of a tool skip."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            parts = content if isinstance(content, list) else [{"text": content}]
            texts = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
            said = [t for t in (_REMINDER.sub("", t).strip() for t in texts) if t]
            return said[-1] if said else ""
    return _prompt_text(body)


def _functions(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's function tools (their `function` objects), malformed entries skipped."""
    out = []
    for tool in body.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out.append(fn)
    return out


def _tool_results(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The tool results that end the conversation, as (function name, content), oldest first."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    names: dict[Any, Any] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[call.get("id")] = call["function"].get("name")
    results = []
    for message in reversed(messages):
        if message.get("role") not in ("tool", "function"):
            break
        name = names.get(message.get("tool_call_id")) or message.get("name") or "tool"
        results.append((str(name), _text_of(message.get("content"))))
    return results[::-1]


# Words of a tool's name that say nothing of what it is for.
_GENERIC = frozenset("get set list fetch create update delete make do run call use tool function the a an to of by for".split())


def _mentions(text: str, name: str) -> bool:
    """Whether a message mentions a tool: a telling word of its name ('weather' of get_weather or getWeather)."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").replace("-", " ").replace(".", " ")
    telling = {w.lower() for w in spaced.split()} - _GENERIC
    said = {w.lower() for w in re.findall(r"[A-Za-z0-9]+", text)}
    return any(w in said or w + "s" in said for w in telling)


# Streamed JSON comes in token-like fragments: words, runs of punctuation, spaces.
_FRAGMENT = re.compile(r"\w+|\s+|[^\w\s]+")


class MockStream:
    def __init__(self, chunks: AsyncIterator[dict[str, Any]]) -> None:
        self._chunks = chunks
        self.usage: Usage | None = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._chunks

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]


class MockProvider:
    name = "mock"

    def __init__(self, deployment: MockDeployment) -> None:
        self._dep = deployment
        self._latency_s = deployment.mock_latency_ms / 1000.0
        self._gap_s = 1.0 / deployment.mock_tokens_per_s if deployment.mock_tokens_per_s else 0.0

    def _reply(self, body: dict[str, Any]) -> str:
        if self._dep.mock_response is not None:
            return self._dep.mock_response
        results = _tool_results(body)
        if results:  # the second half of a tool round trip: answer with what the tools said
            said = " ".join(f"The tool {name} returned: {' '.join(content.split())[:1000]}" for name, content in results)
            return f"This is a mock reply from Lockgate. {said}"
        said = " ".join(_last_user_text(body).split())[:200]
        return f"This is a mock reply from Lockgate. You said: {said}" if said else "This is a mock reply from Lockgate."

    def _structured(self, body: dict[str, Any]) -> str | None:
        """The content `response_format` asks for, as JSON text; None for plain text."""
        fmt = body.get("response_format")
        if self._dep.mock_response is not None or not isinstance(fmt, dict):
            return None
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            value = value_for(schema if isinstance(schema, dict) else {"type": "object"}, key_word(_last_user_text(body)))
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        if fmt.get("type") == "json_object":
            return json.dumps({"reply": self._reply(body)}, ensure_ascii=False)
        return None

    def _tool_call(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The call to make (OpenAI's tool_calls item), or None to answer in text."""
        functions = _functions(body)
        choice = body.get("tool_choice")
        if not functions or choice == "none" or _tool_results(body):
            return None
        said = _last_user_text(body)
        mentioned = [fn for fn in functions if _mentions(said, fn["name"])]
        chosen = mentioned[0] if mentioned else functions[0]
        if isinstance(choice, dict):
            named = choice.get("function")
            name = (named if isinstance(named, dict) else choice).get("name")
            if isinstance(name, str):
                found = [fn for fn in functions if fn["name"] == name]
                if not found:
                    raise InvalidRequest(
                        f"tool_choice names the function {name!r}, which is not in 'tools'.", param="tool_choice"
                    )
                chosen = found[0]
        # A named function forces a call; so does "required", and allowed_tools in its "required" mode.
        forced = choice == "required" or isinstance(choice, dict)
        if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
            inner = choice.get("allowed_tools")
            forced = (inner if isinstance(inner, dict) else choice).get("mode") == "required"
        # Left to choose ("auto"), the mock calls only a tool the user asked about: an agent that sends
        # its whole toolbox with every turn (Claude Code) gets text, not a call that spawns another turn.
        if not forced and (not mentioned or self._dep.mock_response is not None):
            return None
        parameters = chosen.get("parameters")
        args = value_for(parameters if isinstance(parameters, dict) else {"type": "object"}, key_word(_last_user_text(body)))
        return {
            "id": f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": chosen["name"], "arguments": json.dumps(args, ensure_ascii=False, separators=(",", ":"))},
        }

    def _answer(self, body: dict[str, Any], *, chat: bool = True) -> tuple[list[str], str, dict[str, Any] | None]:
        """The reply as pieces (one a token), the finish reason, and the tool call the pieces are the arguments of."""
        call = self._tool_call(body) if chat else None
        structured = None if call is not None or not chat else self._structured(body)
        if call is not None:
            pieces, finish = _FRAGMENT.findall(call["function"]["arguments"]), "tool_calls"
        elif structured is not None:
            pieces, finish = _FRAGMENT.findall(structured), "stop"
        else:
            words = self._reply(body).split(" ")
            pieces, finish = [w + " " for w in words[:-1]] + [words[-1]], "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and 0 < limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
            if call is not None:
                call["function"]["arguments"] = "".join(pieces)
        return pieces, finish, call

    def _usage(self, body: dict[str, Any], pieces: list[str]) -> Usage:
        return Usage(prompt_tokens=estimate_tokens(_prompt_text(body)), completion_tokens=len(pieces))

    async def chat(self, body: dict[str, Any]) -> ProviderResult:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        pieces, finish, call = self._answer(body)
        usage = self._usage(body, pieces)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": []}
        if call is not None:
            message["content"] = None
            message["tool_calls"] = [call]
        return ProviderResult(
            body={
                "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": openai_usage(usage),
                "service_tier": "default",
                "system_fingerprint": "fp_lockgate_mock",
            },
            usage=usage,
        )

    def _paced(
        self,
        base: dict[str, Any],
        pieces: list[str],
        finish: str,
        usage: Usage,
        usage_body: dict[str, Any],
        choice: Callable[[str | None, str | None], dict[str, Any]],
        opening: dict[str, Any] | None = None,
    ) -> MockStream:
        """Pace pieces out as chunks: an opening chunk, one per piece, the finish chunk, then usage."""
        stream: MockStream

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            if self._latency_s:
                await asyncio.sleep(self._latency_s)
            if opening is not None:
                yield {**base, "choices": [opening]}
            for piece in pieces:
                if self._gap_s:
                    await asyncio.sleep(self._gap_s)
                yield {**base, "choices": [choice(piece, None)]}
            yield {**base, "choices": [choice(None, finish)]}
            stream.usage = usage
            yield {**base, "choices": [], "usage": usage_body}

        stream = MockStream(chunks())
        return stream

    async def chat_stream(self, body: dict[str, Any]) -> MockStream:
        pieces, finish, call = self._answer(body)
        usage = self._usage(body, pieces)
        base = {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_lockgate_mock",
            "usage": None,
        }

        def choice(piece: str | None, finish_reason: str | None) -> dict[str, Any]:
            delta: dict[str, Any] = {}
            if piece is not None:
                # As OpenAI streams a call: the arguments in fragments under the call's index.
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} if call else {"content": piece}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

        opening_delta: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if call is not None:  # the first delta names the call: index, id, type, name and empty arguments
            header = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            opening_delta = {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **header}], "refusal": None}
        opening = {"index": 0, "delta": opening_delta, "logprobs": None, "finish_reason": None}
        return self._paced(base, pieces, finish, usage, openai_usage(usage), choice, opening)

    async def completions(self, body: dict[str, Any]) -> ProviderResult:
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        pieces, finish, _ = self._answer(body, chat=False)
        usage = self._usage(body, pieces)
        return ProviderResult(
            body={
                "id": f"cmpl-mock-{uuid.uuid4().hex[:24]}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": finish}],
                "usage": openai_usage(usage, details=False),
            },
            usage=usage,
        )

    async def completions_stream(self, body: dict[str, Any]) -> MockStream:
        pieces, finish, _ = self._answer(body, chat=False)
        usage = self._usage(body, pieces)
        base = {
            "id": f"cmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
        }

        def choice(piece: str | None, finish_reason: str | None) -> dict[str, Any]:
            return {"text": piece or "", "index": 0, "logprobs": None, "finish_reason": finish_reason}

        return self._paced(base, pieces, finish, usage, openai_usage(usage, details=False), choice)

    async def embeddings(self, body: dict[str, Any]) -> ProviderResult:
        raw = body.get("input")
        if isinstance(raw, str):
            inputs: list[Any] = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            inputs = [raw]  # one token array
        elif isinstance(raw, list) and raw:
            inputs = raw
        else:
            raise InvalidRequest("'input' must be a non-empty string or array.", param="input")
        dims = body.get("dimensions") or self._dep.mock_embedding_dims
        if not isinstance(dims, int) or dims < 1 or dims > 8192:
            raise InvalidRequest("'dimensions' must be an integer from 1 to 8192.", param="dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for i, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += estimate_tokens(text) if isinstance(item, str) else len(item)
            vector = _embed(text, dims)
            value: Any = base64.b64encode(array.array("f", vector).tobytes()).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": i, "embedding": value})
        usage = Usage(prompt_tokens=tokens)
        return ProviderResult(
            body={
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            usage=usage,
        )

    async def aclose(self) -> None:
        return None


def _embed(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for a text: same text, same vector."""
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    out = out[:dims]
    norm = math.sqrt(sum(x * x for x in out)) or 1.0
    return [x / norm for x in out]
