"""Canonical chat.completion -> Responses `response` object. Pure functions, no I/O."""

from __future__ import annotations

import os
import time
from typing import Any

from lockgate.providers.base import Usage

# Request fields a Response echoes back, with OpenAI's defaults when the client left them out.
_ECHO_DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "temperature": 1.0,
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}


def new_id(prefix: str) -> str:
    # Random, never derived from the upstream's ids: concurrent requests must not collide.
    return f"{prefix}_{os.urandom(16).hex()}"


def responses_usage(usage: Usage | None) -> dict[str, Any]:
    """Ours -> Responses usage; the details objects are always present (strict clients require them)."""
    u = usage or Usage()
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens, "cache_write_tokens": u.cache_creation_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }


def shell(request: dict[str, Any], *, response_id: str, model: str, created_at: int | None = None) -> dict[str, Any]:
    """The response object before any output: what response.created carries, and the base of the final one."""
    echoed = {
        key: request.get(key, default) if request.get(key) is not None else default for key, default in _ECHO_DEFAULTS.items()
    }
    text: dict[str, Any] = request["text"] if isinstance(request.get("text"), dict) else {}
    reasoning: dict[str, Any] = request["reasoning"] if isinstance(request.get("reasoning"), dict) else {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at if created_at is not None else int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        **echoed,
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": request.get("store") is not False,
        "text": {
            "format": text.get("format") or {"type": "text"},
            **({"verbosity": text["verbosity"]} if text.get("verbosity") else {}),
        },
        "usage": None,
    }


def finish(response: dict[str, Any], finish_reason: Any, usage: Usage | None) -> dict[str, Any]:
    """Set the final status (completed, or incomplete with its reason) and the usage."""
    if finish_reason == "length":
        response["status"], response["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"], response["incomplete_details"] = "incomplete", {"reason": "content_filter"}
    else:
        response["status"] = "completed"
    response["completed_at"] = int(time.time())
    response["usage"] = responses_usage(usage)
    return response


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    # Chat upstreams give the reasoning text itself; Responses carries it as reasoning_text content.
    return {"id": item_id, "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": text}]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments}


def to_response(
    chat: dict[str, Any], request: dict[str, Any], *, response_id: str, model: str, usage: Usage | None
) -> dict[str, Any]:
    """A chat.completion body as a finished Response with the public model name."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        output.append(reasoning_item(new_id("rs"), reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        output.append(message_item(new_id("msg"), content))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        arguments = fn.get("arguments")
        output.append(
            call_item(
                new_id("fc"),
                call.get("id") or new_id("call"),
                fn.get("name") or "",
                arguments if isinstance(arguments, str) else "",
            )
        )
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal and not content:
        output.append(
            {
                "id": new_id("msg"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": refusal}],
            }
        )
    response = shell(
        request,
        response_id=response_id,
        model=model,
        created_at=chat.get("created") if isinstance(chat.get("created"), int) else None,
    )
    response["output"] = output
    return finish(response, choice.get("finish_reason"), usage)
