"""Canonical chat.completion -> Anthropic Message. Pure functions, no I/O."""

from __future__ import annotations

import json
import os
from typing import Any

from lockgate.providers.anthropic.response import FINISH_REASONS
from lockgate.providers.base import Usage

# The inverse of the provider's stop_reason -> finish_reason table, taking each finish
# reason's primary meaning (stop could also be stop_sequence or pause_turn; not knowable here).
STOP_REASONS: dict[str, str] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
STOP_REASONS.update({f: s for s, f in FINISH_REASONS.items() if f not in STOP_REASONS})
STOP_REASONS["function_call"] = "tool_use"


def message_id() -> str:
    # Random, never derived from the upstream's id: concurrent requests must not collide.
    return "msg_" + os.urandom(12).hex()


def stop_reason(finish: Any, *, used_tools: bool) -> str:
    if used_tools and finish in ("tool_calls", "stop", "function_call", None):
        return "tool_use"
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def anthropic_usage(usage: Usage | None) -> dict[str, Any]:
    """Ours -> Anthropic's meaning: input_tokens excludes cache reads and writes."""
    u = usage or Usage()
    return {
        "input_tokens": max(0, u.prompt_tokens - u.cached_tokens - u.cache_creation_tokens),
        "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": u.cache_creation_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool arguments as the object Anthropic's `input` must be ({} when the model wrote no valid object)."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def to_message(chat: dict[str, Any], *, model: str, usage: Usage | None) -> dict[str, Any]:
    """A chat.completion body as a Messages response with the public model name."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls") or []
    for call in calls:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + os.urandom(12).hex(),
                "name": fn.get("name") or "",
                "input": parse_arguments(fn.get("arguments")),
            }
        )
    return {
        "id": message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), used_tools=bool(calls)),
        "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }
