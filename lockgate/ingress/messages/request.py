"""Anthropic Messages request -> canonical OpenAI chat request. Pure functions, no I/O.

Used for deployments that do not speak Messages themselves (OpenAI protocol, mock).
Anthropic-only fields (cache_control, top_k, context_management, container, betas…)
have no OpenAI meaning and are dropped; anything the answer would silently
depend on and that cannot be carried (server tools) is refused with a 400.
"""

from __future__ import annotations

import json
from typing import Any

from lockgate.errors import InvalidRequest
from lockgate.providers.anthropic.messages import IMAGE_MEDIA_TYPES
from lockgate.providers.anthropic.request import THINKING_BUDGETS

# The inverse of the provider's reasoning_effort -> budget_tokens table: the smallest effort
# whose budget covers the client's. Only the efforts every OpenAI reasoning model accepts.
_EFFORTS = ("low", "medium", "high")
_OUTPUT_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def effort_for_budget(budget_tokens: int) -> str:
    for effort in _EFFORTS:
        if budget_tokens <= THINKING_BUDGETS[effort]:
            return effort
    return _EFFORTS[-1]


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}.text", "Input should be a valid string")
    return text


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
    stype = source.get("type")
    if stype == "base64":
        media_type = source.get("media_type")
        data = source.get("data")
        if not isinstance(media_type, str) or media_type not in IMAGE_MEDIA_TYPES or not isinstance(data, str):
            raise _bad(f"{where}.source", "a base64 image needs media_type (jpeg, png, gif, webp) and data")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if stype == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _bad(f"{where}.source", "an image source is base64 or url (file ids live at Anthropic)")


def _document_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
    stype = source.get("type")
    if stype == "base64" and source.get("media_type") == "application/pdf" and isinstance(source.get("data"), str):
        file: dict[str, Any] = {"file_data": f"data:application/pdf;base64,{source['data']}"}
        if isinstance(block.get("title"), str):
            file["filename"] = block["title"]
        return {"type": "file", "file": file}
    if stype == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    raise _bad(f"{where}.source", "only base64 PDF and plain-text documents can go to this model")


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    """A content string or block list -> OpenAI parts (text, image_url, file); other block types refused."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(where, "Input should be a valid string or list of content blocks")
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif btype == "image":
            parts.append(_image_part(block, at))
        elif btype == "document":
            parts.append(_document_part(block, at))
        else:
            raise _bad(f"{at}.type", f"the block type {btype!r} is not allowed here")
    return parts


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # Plain text goes as a string: every OpenAI-compatible server understands that form.
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts) if len(parts) != 1 else parts[0]["text"]
    return parts


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result -> one `tool` message, and the images it held (tool messages cannot carry them)."""
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise _bad(f"{where}.tool_use_id", "Field required")
    content = block.get("content")
    parts = _parts(content, f"{where}.content") if content is not None else []
    texts = [p["text"] for p in parts if p["type"] == "text"]
    others = [p for p in parts if p["type"] != "text"]
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, others


def _user_turn(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _bad(where, "Input should be a valid string or list of content blocks")
    tools: list[dict[str, Any]] = []
    seen: set[str] = set()
    moved: list[dict[str, Any]] = []
    rest: list[Any] = []
    for j, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            message, images = _tool_result(block, f"{where}.{j}")
            if message["tool_call_id"] in seen:
                raise _bad(f"{where}.{j}.tool_use_id", "each tool_use id may be answered once")
            seen.add(message["tool_call_id"])
            tools.append(message)
            moved.extend(images)
        else:
            rest.append(block)
    out = list(tools)  # tool answers first: OpenAI wants them right after the assistant's calls
    parts = moved + (_parts(rest, where) if rest else [])
    if parts:
        out.append({"role": "user", "content": _collapse(parts)})
    return out


def _assistant_turn(content: Any, where: str) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(where, "Input should be a valid string or list of content blocks")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text":
            texts.append(_text(block, at))
        elif btype == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(at, "a tool_use block needs an id and a name")
            tool_input = block.get("input", {})
            if not isinstance(tool_input, dict):
                raise _bad(f"{at}.input", "Input should be a valid dictionary")
            calls.append(
                {
                    "id": block["id"],  # toolu_ ids kept verbatim: the tool_result refers to them
                    "type": "function",
                    "function": {"name": block["name"], "arguments": json.dumps(tool_input, ensure_ascii=False)},
                }
            )
        elif btype in ("thinking", "redacted_thinking"):
            continue  # signed by another provider: meaningless (and unsendable) here
        else:
            raise _bad(f"{at}.type", f"the block type {btype!r} is not allowed in an assistant turn")
    if not texts and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _system(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        texts = []
        for j, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad(f"system.{j}.type", "system blocks must be text blocks")
            texts.append(_text(block, f"system.{j}"))  # cache_control dropped: an Anthropic feature
        return "\n\n".join(texts)
    raise _bad("system", "Input should be a valid string or list of text blocks")


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools", "Input should be a valid list")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _bad(f"tools.{i}.name", "Field required")
        if tool.get("type") not in (None, "custom"):
            # Server tools (web search, code execution…) run at Anthropic; nothing here can run them.
            raise _bad(f"tools.{i}.type", f"the server tool {tool['type']!r} is only available on Anthropic models")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise _bad(f"tools.{i}.input_schema", "Field required")
        fn: dict[str, Any] = {"name": tool["name"], "parameters": schema}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    ctype = choice.get("type") if isinstance(choice, dict) else None
    if ctype == "auto":
        chat["tool_choice"] = "auto"
    elif ctype == "any":
        chat["tool_choice"] = "required"
    elif ctype == "none":
        chat["tool_choice"] = "none"
    elif ctype == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _bad("tool_choice", "type must be auto, any, tool (with a name) or none")
    if choice.get("disable_parallel_tool_use") and ctype != "none":
        chat["parallel_tool_calls"] = False


def _reasoning(body: dict[str, Any]) -> str | None:
    output_config = body.get("output_config")
    if isinstance(output_config, dict) and output_config.get("effort") is not None:
        effort = output_config["effort"]
        if effort not in _OUTPUT_EFFORTS:
            raise _bad("output_config.effort", "must be low, medium, high, xhigh or max")
        return _OUTPUT_EFFORTS[effort]
    thinking = body.get("thinking")
    if thinking is None:
        return None
    ttype = thinking.get("type") if isinstance(thinking, dict) else None
    if ttype == "disabled":
        return None
    if ttype == "adaptive":
        return "medium"
    if ttype == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
            raise _bad("thinking.budget_tokens", "Field required")
        return effort_for_budget(budget)
    raise _bad("thinking.type", "must be enabled, disabled or adaptive")


def _positive_int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema's integer: 5.0 is one
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _bad(key, "Field required" if value is None else "Input should be a positive integer")
    return value


def to_chat(body: dict[str, Any], *, max_tokens_limit: int | None = None) -> dict[str, Any]:
    """A validated Messages request body as the canonical chat request (model still the public name)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "Field required")
    max_tokens = _positive_int(body, "max_tokens")
    if max_tokens_limit is not None:
        max_tokens = min(max_tokens, max_tokens_limit)  # Claude Code asks for 32k-64k; many models stop at 16k
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _bad("messages", "at least one message is required")

    messages: list[dict[str, Any]] = []
    if body.get("system") not in (None, "", []):
        messages.append({"role": "system", "content": _system(body["system"])})
    for i, message in enumerate(raw_messages):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            messages.extend(_user_turn(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            turn = _assistant_turn(message.get("content"), f"{where}.content")
            if turn is not None:
                messages.append(turn)
        else:
            raise _bad(f"{where}.role", "Input should be 'user' or 'assistant'")

    chat: dict[str, Any] = {"model": model, "messages": messages, "max_completion_tokens": max_tokens}
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences", "Input should be a valid list of strings")
        if stops:
            chat["stop"] = stops
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise _bad(key, "Input should be a number from 0 to 1")
            chat[key] = value
    if body.get("tools") is not None:
        tools = _tools(body["tools"])  # `{}` is refused, `[]` means none
        if tools:
            chat["tools"] = tools
    if body.get("tool_choice") is not None:
        if not isinstance(body["tool_choice"], dict):
            raise _bad("tool_choice", "Input should be a valid dictionary")
        if "tools" in chat:
            _tool_choice(body["tool_choice"], chat)
        elif isinstance(body["tool_choice"], dict) and body["tool_choice"].get("type") in ("any", "tool"):
            raise _bad("tool_choice", "tool_choice needs tools")
    effort = _reasoning(body)
    if effort is not None:
        chat["reasoning_effort"] = effort
    output_config = body.get("output_config")
    fmt = output_config.get("format") if isinstance(output_config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _bad("metadata", "Input should be a valid dictionary")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user_id, str) and user_id:
        chat["user"] = user_id
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _bad("stream", "Input should be a valid boolean")
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # Messages always reports usage at the end
    return chat


def without_unsigned_thinking(body: dict[str, Any]) -> dict[str, Any]:
    """The body for an Anthropic deployment, minus thinking blocks no Anthropic model signed.

    Thinking that a translated (OpenAI-protocol) deployment produced reaches the client with an
    empty signature; replayed to Anthropic it would be refused and wedge the session, so it is
    dropped. Signed blocks, and the body when there is nothing to drop, go on untouched.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not any(_has_unsigned_thinking(m) for m in messages):
        return body
    cleaned = []
    for message in messages:
        if _has_unsigned_thinking(message):
            kept = [b for b in message["content"] if not _unsigned_thinking(b)]
            message = {**message, "content": kept or [{"type": "text", "text": "(thinking omitted)"}]}
        cleaned.append(message)
    return {**body, "messages": cleaned}


def _unsigned_thinking(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature")


def _has_unsigned_thinking(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return message.get("role") == "assistant" and isinstance(content, list) and any(_unsigned_thinking(b) for b in content)
