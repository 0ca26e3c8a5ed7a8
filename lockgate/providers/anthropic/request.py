"""OpenAI chat request -> Anthropic Messages request. Pure functions, no I/O.

Every OpenAI parameter is either translated, dropped because OpenAI documents
it as a hint (or it only concerns OpenAI's own storage), or refused with a 400
naming it: a silent drop of something the client relies on would be a lie.
docs/anthropic.md lists which is which.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lockgate.errors import InvalidRequest

# The forced tool that carries `response_format` output; its input becomes message content.
JSON_TOOL_NAME = "lockgate_json_response"

# reasoning_effort -> thinking budget_tokens (Anthropic's minimum budget is 1024).
THINKING_BUDGETS: dict[str, int] = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"^data:([^;,]+)((?:;[^;,]+)*),(.*)$", re.DOTALL)

# Parameters translated below.
_TRANSLATED = frozenset(
    {
        "model", "messages", "max_tokens", "max_completion_tokens", "stop", "temperature", "top_p",
        "user", "safety_identifier", "tools", "tool_choice", "parallel_tool_calls", "response_format",
        "reasoning_effort", "stream", "stream_options",
    }
)
# Anthropic-native parameters some OpenAI clients send through `extra_body`; passed as they are.
_PASSTHROUGH = frozenset({"top_k", "thinking"})
# OpenAI calls these hints or OpenAI-side features with no effect on the answer: dropped.
_DROPPED = frozenset({"seed", "service_tier", "store", "metadata", "prediction", "prompt_cache_key", "verbosity"})
# Accepted only at their no-op value; anything else is a 400 naming the parameter.
_NOOP_VALUES: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logit_bias": ({},),
    "modalities": (["text"],),
}


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the response translation needs to know about how the request was translated."""

    model: str
    # Name of the forced tool whose input is the answer (response_format), if any.
    json_tool: str | None = None
    # The schema was not an object and was wrapped as {"value": ...}: unwrap on the way back.
    json_wrapped: bool = False


def _unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"Anthropic models do not support `{param}`: {why}", param=param)


def check_params(body: dict[str, Any]) -> None:
    """Refuse parameters Anthropic cannot honour, naming them."""
    for key, value in body.items():
        if value is None or key in _TRANSLATED or key in _PASSTHROUGH or key in _DROPPED:
            continue
        if key in _NOOP_VALUES:
            if value not in _NOOP_VALUES[key]:
                raise _unsupported(key, f"only {_NOOP_VALUES[key][0]!r} is accepted.")
            continue
        if key in ("functions", "function_call"):
            raise _unsupported(key, "use `tools` and `tool_choice` instead.")
        if key in ("audio", "web_search_options"):
            raise _unsupported(key, "this feature has no Anthropic equivalent.")
        raise InvalidRequest(f"Unrecognized request argument supplied: {key}", param=key)


# --- content ---------------------------------------------------------------------------------


def _image_block(url: Any, where: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}.image_url.url must be a non-empty string.", param=f"{where}.image_url.url")
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not match or ";base64" not in match.group(2):
            raise InvalidRequest(
                f"{where}.image_url.url: only base64 data URLs are supported.", param=f"{where}.image_url.url"
            )
        media_type = match.group(1).lower()
        if media_type not in IMAGE_MEDIA_TYPES:
            raise InvalidRequest(
                f"{where}.image_url.url: Anthropic accepts image/jpeg, image/png, image/gif and image/webp, "
                f"not {media_type}.",
                param=f"{where}.image_url.url",
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": match.group(3)}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest(
        f"{where}.image_url.url must be an http(s) URL or a base64 data URL.", param=f"{where}.image_url.url"
    )


def _file_block(file: Any, where: str) -> dict[str, Any]:
    # Only inline PDFs have an Anthropic equivalent (a document block); file ids live at OpenAI.
    data = file.get("file_data") if isinstance(file, dict) else None
    match = _DATA_URL.match(data) if isinstance(data, str) else None
    if not match or match.group(1).lower() != "application/pdf" or ";base64" not in match.group(2):
        raise InvalidRequest(
            f"{where}: only inline PDF files (file_data as a base64 data URL) are supported.", param=f"{where}.file"
        )
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": match.group(3)},
    }
    if isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def _with_cache_control(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    # Prompt-caching markers some clients put on OpenAI parts are Anthropic's own; keep them.
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def content_blocks(content: Any, where: str, *, allow: frozenset[str]) -> list[dict[str, Any]]:
    """OpenAI message content (string or parts) -> Anthropic blocks. Empty text is skipped (Anthropic rejects it)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of content parts.", param=where)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        ptype = part.get("type") if isinstance(part, dict) else None
        if ptype not in allow:
            raise InvalidRequest(f"{at}.type {ptype!r} is not supported here.", param=f"{at}.type")
        if ptype in ("text", "refusal"):
            text = part.get(ptype)
            if not isinstance(text, str):
                raise InvalidRequest(f"{at}.{ptype} must be a string.", param=f"{at}.{ptype}")
            if text:
                blocks.append(_with_cache_control({"type": "text", "text": text}, part))
        elif ptype == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_with_cache_control(_image_block(url, at), part))  # `detail` is a hint: dropped
        elif ptype == "file":
            blocks.append(_with_cache_control(_file_block(part.get("file"), at), part))
    return blocks


_USER_PARTS = frozenset({"text", "image_url", "file"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})
_SYSTEM_PARTS = frozenset({"text"})


def _tool_use_blocks(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, list):
        raise InvalidRequest(f"{where}.tool_calls must be an array.", param=f"{where}.tool_calls")
    blocks = []
    for k, call in enumerate(tool_calls):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            raise InvalidRequest(f"{at} needs an id and a function name.", param=at)
        raw = fn.get("arguments") or "{}"
        try:
            arguments = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise InvalidRequest(
                f"{at}.function.arguments is not valid JSON.", param=f"{at}.function.arguments"
            ) from None
        if not isinstance(arguments, dict):
            # Anthropic tool input is always an object.
            raise InvalidRequest(
                f"{at}.function.arguments must be a JSON object.", param=f"{at}.function.arguments"
            )
        blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"], "input": arguments})
    return blocks


def convert_messages(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenAI messages -> (Anthropic system blocks, Anthropic messages with alternating roles)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty array.", param="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        # Anthropic wants user/assistant to alternate: consecutive same-role messages merge.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            # Anthropic has one top-level system prompt; system messages anywhere join it, in order.
            system.extend(content_blocks(message.get("content"), f"{where}.content", allow=_SYSTEM_PARTS))
        elif role == "user":
            blocks = content_blocks(message.get("content"), f"{where}.content", allow=_USER_PARTS)
            if not blocks:
                raise InvalidRequest(f"{where}.content must not be empty.", param=f"{where}.content")
            add("user", blocks)
        elif role == "assistant":
            blocks = content_blocks(message.get("content"), f"{where}.content", allow=_ASSISTANT_PARTS)
            if message.get("tool_calls"):
                blocks += _tool_use_blocks(message["tool_calls"], where)
            # `reasoning_content` of earlier turns cannot go back: Anthropic needs the signed original.
            if blocks:
                add("assistant", blocks)
        elif role == "tool":
            tool_call_id = message.get("tool_call_id")
            if not isinstance(tool_call_id, str):
                raise InvalidRequest(f"{where}.tool_call_id is required.", param=f"{where}.tool_call_id")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
            content = message.get("content")
            if isinstance(content, str):
                if content:
                    result["content"] = content
            else:
                parts = content_blocks(content, f"{where}.content", allow=_USER_PARTS)
                if parts:
                    result["content"] = parts
            # Tool results travel in a user turn; consecutive ones merge into the same turn.
            add("user", [result])
        elif role == "function":
            raise InvalidRequest(f"{where}: the `function` role is deprecated; use `tool`.", param=f"{where}.role")
        else:
            raise InvalidRequest(f"{where}.role {role!r} is not a valid role.", param=f"{where}.role")
    return system, turns


# --- tools ----------------------------------------------------------------------------------------


def convert_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be an array.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"tools[{i}]: only function tools with a name are supported.", param=f"tools[{i}]")
        if fn["name"] == JSON_TOOL_NAME:
            raise InvalidRequest(f"tools[{i}]: the name {JSON_TOOL_NAME} is reserved.", param=f"tools[{i}]")
        schema = fn.get("parameters")
        converted: dict[str, Any] = {
            "name": fn["name"],
            # Anthropic requires an input_schema; OpenAI's default is "no parameters".
            "input_schema": schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
        }
        if isinstance(fn.get("description"), str):
            converted["description"] = fn["description"]
        # `strict` is dropped: the schema still guides the model, but is not enforced (see docs).
        _with_cache_control(converted, tool)
        out.append(converted)
    return out


def convert_tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    fn = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return {"type": "tool", "name": fn["name"]}
    raise InvalidRequest(
        "tool_choice must be 'auto', 'none', 'required' or a named function.", param="tool_choice"
    )


def json_tool(response_format: Any) -> tuple[dict[str, Any] | None, bool]:
    """The forced tool that carries a JSON answer, and whether its schema was wrapped."""
    rtype = response_format.get("type") if isinstance(response_format, dict) else None
    if rtype == "text":
        return None, False
    if rtype == "json_object":
        return {
            "name": JSON_TOOL_NAME,
            "description": "Respond with your complete answer as a JSON object.",
            "input_schema": {"type": "object"},
        }, False
    if rtype == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("response_format.json_schema.schema must be an object.", param="response_format")
        description = "Respond with your complete answer, following this schema."
        if isinstance(spec.get("description"), str):
            description += " " + spec["description"]
        wrapped = schema.get("type") != "object"
        if wrapped:
            # A tool's input is always an object: wrap other schemas and unwrap the answer.
            schema = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
        return {"name": JSON_TOOL_NAME, "description": description, "input_schema": schema}, wrapped
    raise InvalidRequest("response_format.type must be text, json_object or json_schema.", param="response_format")


# --- the request -------------------------------------------------------------------------------------


def _max_tokens(body: dict[str, Any], default: int) -> tuple[int, bool]:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(f"{key} must be a positive integer.", param=key)
            return value, True
    return default, False


def _thinking(effort: Any, max_tokens: int, client_set: bool) -> tuple[dict[str, Any] | None, int]:
    """A thinking config for reasoning_effort, and max_tokens (thinking counts towards it)."""
    if effort == "none":
        return None, max_tokens
    if effort not in THINKING_BUDGETS:
        raise InvalidRequest(
            f"reasoning_effort must be one of none, {', '.join(THINKING_BUDGETS)}.", param="reasoning_effort"
        )
    budget = THINKING_BUDGETS[effort]
    if not client_set:
        # The deployment default is for the answer; give thinking its room on top.
        return {"type": "enabled", "budget_tokens": budget}, max(max_tokens, budget + max_tokens)
    if max_tokens <= MIN_THINKING_BUDGET:
        raise InvalidRequest(
            f"reasoning_effort needs max_tokens above {MIN_THINKING_BUDGET} on Anthropic models.",
            param="max_tokens",
        )
    # Like OpenAI's max_completion_tokens, Anthropic's max_tokens includes the reasoning.
    return {"type": "enabled", "budget_tokens": min(budget, max_tokens - 1)}, max_tokens


def to_anthropic(body: dict[str, Any], *, max_tokens_default: int) -> tuple[dict[str, Any], RequestContext]:
    """Translate an OpenAI chat request into an Anthropic Messages request."""
    check_params(body)
    system, messages = convert_messages(body.get("messages"))
    payload: dict[str, Any] = {"model": body["model"]}
    if system:
        payload["system"] = system
    payload["messages"] = messages
    max_tokens, client_set = _max_tokens(body, max_tokens_default)

    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest("stop must be a string or an array of strings.", param="stop")
        if stops:
            payload["stop_sequences"] = stops
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1:
            # OpenAI allows up to 2; rescaling would change the meaning, so say so.
            raise InvalidRequest("Anthropic models accept a temperature from 0 to 1.", param="temperature")
        payload["temperature"] = temperature
    if body.get("top_p") is not None:
        payload["top_p"] = body["top_p"]
    for key in _PASSTHROUGH:
        if body.get(key) is not None:
            payload[key] = body[key]
    user = body.get("user") if body.get("user") is not None else body.get("safety_identifier")
    if isinstance(user, str) and user:
        payload["metadata"] = {"user_id": user}

    tools = convert_tools(body["tools"]) if body.get("tools") else []
    tool_choice = convert_tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else None
    if tool_choice is not None and not tools:
        if tool_choice["type"] in ("any", "tool"):
            raise InvalidRequest("tool_choice needs tools.", param="tool_choice")
        tool_choice = None  # auto / none without tools mean nothing
    if tool_choice and tool_choice["type"] == "tool" and tool_choice["name"] not in {t["name"] for t in tools}:
        raise InvalidRequest(f"tool_choice names an unknown function {tool_choice['name']!r}.", param="tool_choice")

    ctx = RequestContext(model=body["model"])
    forced, wrapped = json_tool(body["response_format"]) if body.get("response_format") is not None else (None, False)
    if forced is not None and (tool_choice is None or tool_choice["type"] in ("auto", "none")):
        # The answer must be JSON: force our tool, or (with client tools on auto) let the
        # model pick between calling a client tool and answering through ours.
        if tool_choice is None or tool_choice["type"] == "none" or not tools:
            tools, tool_choice = [forced], {"type": "tool", "name": JSON_TOOL_NAME}
        else:
            tools, tool_choice = tools + [forced], {"type": "any"}
        ctx = RequestContext(model=body["model"], json_tool=JSON_TOOL_NAME, json_wrapped=wrapped)
    # With tool_choice required or a named function the answer is a tool call: response_format has no say.

    if body.get("parallel_tool_calls") is False and tools:
        if tool_choice is None:
            tool_choice = {"type": "auto"}
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True
    if tools:
        payload["tools"] = tools
    if tool_choice is not None:
        payload["tool_choice"] = tool_choice

    effort = body.get("reasoning_effort")
    if effort is not None and "thinking" not in payload:
        thinking, max_tokens = _thinking(effort, max_tokens, client_set)
        if thinking is not None:
            if ctx.json_tool or (tool_choice and tool_choice["type"] in ("any", "tool")):
                # Anthropic refuses forced tool use with thinking.
                param = "response_format" if ctx.json_tool else "tool_choice"
                raise InvalidRequest(
                    f"reasoning_effort cannot be combined with {param} on Anthropic models.", param=param
                )
            if temperature is not None and temperature != 1:
                raise InvalidRequest(
                    "reasoning_effort cannot be combined with a temperature other than 1 on Anthropic models.",
                    param="temperature",
                )
            if not _continues_tool_turn(messages):
                payload["thinking"] = thinking
            # else: thinking is left off. Anthropic requires the signed thinking block of the
            # assistant turn being continued, which the OpenAI format cannot carry back.
    payload["max_tokens"] = max_tokens
    if body.get("stream"):
        payload["stream"] = True
    return payload, ctx


def _continues_tool_turn(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1] if messages else None
    return bool(
        last
        and last["role"] == "user"
        and any(b.get("type") == "tool_result" for b in last["content"])
    )


# --- legacy completions ------------------------------------------------------------------------------

_COMPLETIONS_REFUSED = {"suffix": (None, ""), "echo": (None, False), "best_of": (None, 1), "logprobs": (None, 0)}


def completions_to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A legacy completions request as the chat request with the prompt as one user message."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest(
            "Anthropic models take a single string prompt (not token arrays or several prompts).", param="prompt"
        )
    for key, allowed in _COMPLETIONS_REFUSED.items():
        if body.get(key) not in allowed:
            raise _unsupported(key, "legacy completions on Anthropic models cannot honour it.")
    chat = {k: v for k, v in body.items() if k not in ("prompt", *_COMPLETIONS_REFUSED)}
    chat["messages"] = [{"role": "user", "content": prompt}]
    return chat
