"""Helpers for Messages-stream tests: parse Anthropic SSE and check the invariants the SDKs rely on."""

from __future__ import annotations

import json
from typing import Any


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) per frame; a frame without an `event:` line fails the test."""
    frames = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("event: "), f"frame without an event line: {block!r}"
        assert lines[1].startswith("data: "), block
        name, data = lines[0][7:], json.loads(lines[1][6:])
        assert data["type"] == name, block
        frames.append((name, data))
    return frames


def check_and_accumulate(frames: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Assert the stream rules (one message_start first, blocks 0..n-1 one at a time, each closed,
    deltas matching their block, message_delta with output_tokens, message_stop last) and
    return the final message as the SDK would accumulate it."""
    events = [d for n, d in frames if n != "ping"]
    assert events[0]["type"] == "message_start"
    assert [e["type"] for e in events].count("message_start") == 1
    assert events[-1]["type"] == "message_stop"
    message = dict(events[0]["message"])
    message["content"] = []
    open_index: int | None = None
    json_parts: dict[int, list[str]] = {}
    saw_delta = False
    for event in events[1:-1]:
        etype = event["type"]
        if etype == "content_block_start":
            assert open_index is None, "two blocks open at once"
            assert event["index"] == len(message["content"]), "block indices must run 0..n-1"
            block = dict(event["content_block"])
            if block["type"] == "tool_use":
                assert block["input"] == {}
            message["content"].append(block)
            open_index = event["index"]
        elif etype == "content_block_delta":
            assert event["index"] == open_index, "delta outside its open block"
            block, delta = message["content"][open_index], event["delta"]
            kind = {
                "text_delta": "text",
                "input_json_delta": "tool_use",
                "thinking_delta": "thinking",
                "signature_delta": "thinking",
            }[delta["type"]]
            assert block["type"] == kind, f"{delta['type']} inside a {block['type']} block"
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
            else:
                json_parts.setdefault(open_index, []).append(delta["partial_json"])
        elif etype == "content_block_stop":
            assert event["index"] == open_index
            block = message["content"][open_index]
            if block["type"] == "text":
                assert block["text"], "empty text block"
            if open_index in json_parts:
                block["input"] = json.loads("".join(json_parts[open_index]))
            open_index = None
        elif etype == "message_delta":
            assert open_index is None, "message_delta with a block still open"
            assert isinstance(event["usage"]["output_tokens"], int)
            message.update(event["delta"])
            message["usage"] = {**message["usage"], **event["usage"]}
            saw_delta = True
        else:
            raise AssertionError(f"unexpected event {etype}")
    assert saw_delta, "no message_delta"
    return message
