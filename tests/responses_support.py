"""Checks shared by the Responses tests: parse an SSE body and hold it to the wire contract."""

from __future__ import annotations

import json
from typing import Any

TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """Events of a Responses stream; each `event:` line must name its data's type."""
    events = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        lines = frame.split("\n")
        assert lines[0].startswith("event: "), frame
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == lines[0].removeprefix("event: "), frame
        events.append(data)
    return events


def check_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Assert the ordering rules strict clients rely on; return the terminal event's response."""
    assert events[0]["type"] == "response.created"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1, ids
    assert events[-1]["type"] in TERMINAL
    assert sum(e["type"] in TERMINAL for e in events) == 1
    added: dict[int, dict[str, Any]] = {}
    parts: set[int] = set()
    done: set[int] = set()
    for e in events:
        index = e.get("output_index")
        if e["type"] == "response.output_item.added":
            assert index == len(added), "output indexes dense and in order"
            added[index] = e["item"]
        elif index is not None:
            assert index in added, f"{e['type']} before its output_item.added"
            assert index not in done, f"{e['type']} after its output_item.done"
            if e["type"] == "response.content_part.added":
                parts.add(index)
            if e["type"] in ("response.output_text.delta", "response.reasoning_text.delta"):
                assert index in parts, "a text delta before content_part.added"
            if e["type"] == "response.output_item.done":
                assert e["item"]["id"] == added[index]["id"]
                done.add(index)
    final = events[-1]["response"]
    if final["status"] != "failed":
        assert done == set(added), "every item closed"
        assert len(final["output"]) == len(added)
    return final
