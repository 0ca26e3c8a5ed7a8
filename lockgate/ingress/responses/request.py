"""Responses request -> canonical chat request. Pure functions, no I/O.

What the chat body cannot carry (hosted tools such as web_search, item types with
no chat equivalent) is refused with a 400 naming the field, never dropped silently.
Items a stored conversation contributes (previous_response_id) are prepended by the
caller; this module only translates a flat list of items.
"""

from __future__ import annotations

from typing import Any

import orjson

from lockgate.errors import InvalidRequest

# Fields of the Responses request this module understands (or deliberately ignores).
_HANDLED = {
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "reasoning",
    "max_output_tokens",
    "temperature",
    "top_p",
    "metadata",
    "parallel_tool_calls",
    "user",
    "stream",
    "store",
    "previous_response_id",
    "include",
    "truncation",
    "stream_options",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "top_logprobs",
    "background",
    "max_tool_calls",
}
_HOSTED_TOOLS = {
    "web_search",
    "web_search_preview",
    "file_search",
    "computer_use_preview",
    "code_interpreter",
    "image_generation",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
    "custom",
}


def _text_of(content: Any, param: str) -> str | list[dict[str, Any]]:
    """A message's content as chat content: a string, or parts (text and image_url)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("A message's `content` must be a string or a list of content parts.", param=param)
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise InvalidRequest(
                    "An `input_image` needs an `image_url` here (file ids are not supported).", param=f"{param}[{i}]"
                )
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidRequest(f"The content part type `{kind}` is not supported.", param=f"{param}[{i}].type")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)  # plain text: the widest upstream support
    return parts


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
    return orjson.dumps(output).decode()


def items_to_messages(items: list[Any], param: str = "input") -> list[dict[str, Any]]:
    """Input items -> chat messages. Consecutive function_call items become one assistant message."""
    messages: list[dict[str, Any]] = []
    calls_seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest("Each input item must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequest("A message's `role` must be user, assistant, system or developer.", param=f"{where}.role")
            content = _text_of(item.get("content"), f"{where}.content")
            messages.append(
                {"role": role, "content": content if role == "user" or isinstance(content, str) else _text_only(content)}
            )
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                raise InvalidRequest("A `function_call` item needs `call_id` and `name`.", param=where)
            arguments = item.get("arguments", "")
            call = {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode(),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)  # text then calls: one chat turn
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            calls_seen.add(call_id)
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or call_id not in calls_seen:
                # Never fabricate a call for an orphan output: the history would stay broken every turn.
                raise InvalidRequest(f"No function_call with call_id `{call_id}` precedes this output.", param=f"{where}.call_id")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": _output_text(item.get("output", ""))})
        elif kind == "reasoning":
            continue  # a chat upstream cannot take reasoning back; it is not needed to continue
        else:
            raise InvalidRequest(f"The input item type `{kind}` is not supported on this deployment.", param=f"{where}.type")
    return messages


def _text_only(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text", "") for p in parts if p.get("type") == "text")


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's `input` as a list of items (a string is one user message)."""
    value = body.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if isinstance(value, list):
        return value
    raise InvalidRequest("`input` must be a string or a list of items.", param="input")


def check_flags(body: dict[str, Any]) -> None:
    """`stream` and `store` are booleans or null: `{}` is not a false."""
    for key in ("stream", "store"):
        value = body.get(key)
        if value is not None and not isinstance(value, bool):
            raise InvalidRequest(f"`{key}` must be a boolean.", param=key)


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("`tools` must be a list.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest("A function tool needs a `name`.", param=f"tools[{i}].name")
            fn: dict[str, Any] = {"name": name}
            if tool.get("description"):
                fn["description"] = tool["description"]
            fn["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
            if tool.get("strict") is not None:
                fn["strict"] = bool(tool["strict"])
            out.append({"type": "function", "function": fn})
        elif isinstance(kind, str) and (kind in _HOSTED_TOOLS or kind.startswith("web_search")):
            raise InvalidRequest(
                f"The hosted tool `{kind}` cannot run on this deployment; only function tools are supported.", param="tools"
            )
        else:
            raise InvalidRequest(f"The tool type `{kind}` is not supported.", param="tools")
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("none", "auto", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest("`tool_choice` must be none, auto, required or a function tool.", param="tool_choice")


def _response_format(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, dict) or text.get("format") is None:
        return None
    fmt = text["format"]
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequest("`text.format.schema` must be a JSON schema object.", param="text.format.schema")
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest("`text.format.type` must be text, json_object or json_schema.", param="text.format.type")


def to_chat(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Responses request (with earlier turns' items, if chained) as a chat completions request."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required.", param="model")
    items = [*(history or []), *input_items(body)]
    if not items:
        raise InvalidRequest("`input` is required.", param="input")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("`instructions` must be a string.", param="instructions")
        messages.append({"role": "system", "content": instructions})
    messages += items_to_messages(items)
    chat: dict[str, Any] = {"model": model, "messages": messages}
    tools = _tools(body["tools"]) if body.get("tools") is not None else []  # `{}` is refused, `[]` means none
    if tools:
        chat["tools"] = tools
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = bool(body["parallel_tool_calls"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]
    limit = body.get("max_output_tokens")
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # JSON Schema's integer: 5.0 is one
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidRequest("`max_output_tokens` must be a positive integer.", param="max_output_tokens")
        chat["max_completion_tokens"] = limit
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise InvalidRequest(f"`{key}` must be a number.", param=key)
            top = 2 if key == "temperature" else 1
            if not 0 <= value <= top:
                raise InvalidRequest(f"`{key}` must be from 0 to {top}.", param=key)
            chat[key] = value
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("`metadata` must be an object of string pairs.", param="metadata")
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        chat["user"] = user
    check_flags(body)
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat
