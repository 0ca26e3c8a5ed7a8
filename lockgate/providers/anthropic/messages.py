"""OpenAI messages and content parts -> Anthropic system blocks and turns. Pure functions, no I/O."""

from __future__ import annotations

import json
import re
from typing import Any

from lockgate.errors import InvalidRequest

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"^data:([^;,]+)((?:;[^;,]+)*),(.*)$", re.DOTALL)


# --- content parts ---------------------------------------------------------------------------------


def _image_block(url: Any, where: str) -> dict[str, Any]:
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}.image_url.url must be a non-empty string.", param=f"{where}.image_url.url")
    if url.startswith("data:"):
        match = _DATA_URL.match(url)
        if not match or ";base64" not in match.group(2):
            raise InvalidRequest(f"{where}.image_url.url: only base64 data URLs are supported.", param=f"{where}.image_url.url")
        media_type = match.group(1).lower()
        if media_type not in IMAGE_MEDIA_TYPES:
            raise InvalidRequest(
                f"{where}.image_url.url: Anthropic accepts image/jpeg, image/png, image/gif and image/webp, not {media_type}.",
                param=f"{where}.image_url.url",
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": match.group(3)}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest(f"{where}.image_url.url must be an http(s) URL or a base64 data URL.", param=f"{where}.image_url.url")


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


def with_cache_control(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
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
                blocks.append(with_cache_control({"type": "text", "text": text}, part))
        elif ptype == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(with_cache_control(_image_block(url, at), part))  # `detail` is a hint: dropped
        elif ptype == "file":
            blocks.append(with_cache_control(_file_block(part.get("file"), at), part))
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
            raise InvalidRequest(f"{at}.function.arguments is not valid JSON.", param=f"{at}.function.arguments") from None
        if not isinstance(arguments, dict):
            # Anthropic tool input is always an object.
            raise InvalidRequest(f"{at}.function.arguments must be a JSON object.", param=f"{at}.function.arguments")
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
