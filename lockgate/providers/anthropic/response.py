"""Anthropic Message -> OpenAI chat.completion (and text_completion). Pure functions, no I/O."""

from __future__ import annotations

import json
import time
from typing import Any

from lockgate.errors import ProviderBadResponse
from lockgate.providers.anthropic.request import TranslationContext
from lockgate.providers.base import Usage, openai_usage, token_count

FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any, *, answered_with_json_tool: bool = False) -> str:
    if stop_reason == "tool_use" and answered_with_json_tool:
        return "stop"  # the forced response_format tool is the answer, not a call
    # An unknown (newer) stop reason ended the turn normally as far as the client can tell.
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_from_anthropic(usage: Any, *, strict: bool = True) -> Usage:
    """Anthropic usage -> ours. input_tokens excludes cache reads and writes; OpenAI's prompt_tokens includes both.

    A count that cannot be true is refused (ProviderBadUsage); ``strict=False`` reads it as 0
    (the partial usage of a stream that already failed).
    """
    u = usage if isinstance(usage, dict) else {}

    def count(field: str) -> int:
        return token_count(u.get(field), field, strict=strict)

    cache_read = count("cache_read_input_tokens")
    cache_creation = count("cache_creation_input_tokens")
    return Usage(
        prompt_tokens=count("input_tokens") + cache_read + cache_creation,
        completion_tokens=count("output_tokens"),
        cached_tokens=cache_read,
        cache_creation_tokens=cache_creation,
    )


def json_answer(tool_input: Any, wrapped: bool) -> str:
    """The message content for the forced response_format tool's input."""
    if wrapped and isinstance(tool_input, dict):
        tool_input = tool_input.get("value")
    return json.dumps(tool_input, ensure_ascii=False, separators=(",", ":"))


def unwrap_json_text(raw: str) -> str:
    """Unwrap streamed {"value": ...} JSON text; the raw text when it does not parse."""
    try:
        return json_answer(json.loads(raw or "{}"), True)
    except ValueError:
        return raw


def chat_completion(message: Any, ctx: TranslationContext, *, created: int | None = None) -> tuple[dict[str, Any], Usage]:
    """A complete Anthropic Message as an OpenAI chat.completion body, and its usage."""
    if not isinstance(message, dict) or message.get("type") != "message" or not isinstance(message.get("content"), list):
        raise ProviderBadResponse("The upstream Anthropic model answered with something that is not a Message.")
    texts: list[str] = []
    thinking: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    answered_with_json_tool = False
    for block in message["content"]:
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text":
            texts.append(str(block.get("text") or ""))
        elif btype == "thinking":
            thinking.append(str(block.get("thinking") or ""))
        elif btype == "tool_use":
            if ctx.json_tool and block.get("name") == ctx.json_tool:
                texts.append(json_answer(block.get("input"), ctx.json_wrapped))
                answered_with_json_tool = True
                continue
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
                    },
                }
            )
        # redacted_thinking, server tool blocks and future types have no OpenAI field: skipped.
    result: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if thinking:
        result["reasoning_content"] = "".join(thinking)
    if tool_calls:
        result["tool_calls"] = tool_calls
    usage = usage_from_anthropic(message.get("usage"))
    stop = message.get("stop_reason")
    body = {
        "id": str(message.get("id") or ""),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": message.get("model") or ctx.model,
        "choices": [
            {
                "index": 0,
                "message": result,
                "logprobs": None,
                "finish_reason": finish_reason(stop, answered_with_json_tool=answered_with_json_tool and not tool_calls),
            }
        ],
        "usage": openai_usage(usage),
        "system_fingerprint": None,
    }
    return body, usage


def text_completion(chat: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion body as a legacy text_completion body."""
    choice = chat["choices"][0]
    usage = chat.get("usage") or {}
    return {
        "id": chat["id"],
        "object": "text_completion",
        "created": chat["created"],
        "model": chat["model"],
        "choices": [
            {
                "text": choice["message"].get("content") or "",
                "index": 0,
                "logprobs": None,
                "finish_reason": choice["finish_reason"],
            }
        ],
        "usage": {k: usage.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }
