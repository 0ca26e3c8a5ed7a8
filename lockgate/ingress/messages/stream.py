"""Canonical chat.completion.chunk stream -> Anthropic Messages SSE events. A state machine, no I/O.

What the official SDK's stream helper and Claude Code require, and peers broke:
exactly one ``message_start`` first; every frame with its ``event:`` line; blocks
opened lazily on their first real delta (never an empty leading text block),
indices 0..n-1 in order with a fresh index per block (never the upstream's),
one block open at a time and every block closed; thinking deltas only inside
thinking blocks; tool arguments that arrive before the name, or only at the end,
still sent as ``input_json_delta``; ``message_delta`` with the real stop reason
and ``usage.output_tokens``; ``message_stop`` last.

Parallel tool calls may interleave their argument deltas (index 0 and 1
alternating), but a block cannot be reopened once closed. So the current tool's
block stays open while any other call is buffered; the open block is closed only
once its arguments form a complete JSON object (nothing can legitimately follow)
or at the end, and each buffered call is then sent whole, in index order. Calls
that stream one after another still stream live. Only a fragment arriving after
a text or thinking block interrupted its call is lost (no known server does it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from lockgate.ingress.messages.response import anthropic_usage, message_id, stop_reason
from lockgate.providers.base import Usage, tokens_for_chars


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


PING = sse({"type": "ping"})


def _complete_object(fragments: list[str]) -> bool:
    """Whether streamed arguments already form a whole JSON object, so no fragment can follow."""
    try:
        return isinstance(orjson.loads("".join(fragments)), dict)
    except orjson.JSONDecodeError:
        return False


def error_event(etype: str, message: str) -> bytes:
    return sse({"type": "error", "error": {"type": etype, "message": message}})


@dataclass(slots=True)
class _Tool:
    id: str | None = None
    name: str | None = None
    pending: list[str] = field(default_factory=list)  # arguments seen before the block could open
    sent: list[str] = field(default_factory=list)  # arguments streamed in the open block
    block: int | None = None  # our block index once opened
    closed: bool = False


class MessagesStreamEncoder:
    """Feed it canonical chunks in order; it returns the SSE bytes each one makes."""

    def __init__(self, model: str, *, input_tokens: int = 0) -> None:
        self._model = model
        self._input_estimate = input_tokens
        self._started = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (block type, index)
        self._tools: dict[int, _Tool] = {}
        self._used_tools = False
        self._finish: str | None = None
        self._signature: str | None = None
        self.usage: Usage | None = None
        self.output_chars = 0
        self.finished = False

    # --- framing ----------------------------------------------------------------------------

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The OpenAI protocol reports usage only at the end: an estimate here, the count in message_delta.
            "usage": {
                "input_tokens": self._input_estimate,
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        return [sse({"type": "message_start", "message": message})]

    def _close(self) -> list[bytes]:
        if self._open is None:
            return []
        btype, index = self._open
        out = []
        if btype == "thinking" and self._signature is not None:
            out.append(
                sse(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": self._signature},
                    }
                )
            )
        self._signature = None
        out.append(sse({"type": "content_block_stop", "index": index}))
        self._open = None
        for tool in self._tools.values():
            if tool.block == index:
                tool.closed = True
        return out

    def _open_block(self, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        index = self._next_index
        self._next_index += 1
        self._open = (block["type"], index)
        out.append(sse({"type": "content_block_start", "index": index, "content_block": block}))
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        assert self._open is not None
        return sse({"type": "content_block_delta", "index": self._open[1], "delta": delta})

    # --- chunks --------------------------------------------------------------------------------

    def start(self) -> bytes:
        """message_start, sent before the first chunk so the client sees the turn begin at once."""
        return b"".join(self._start())

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self.finished:
            return b""
        out = self._start()
        usage = chunk.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Messages has one answer; n > 1 is not accepted on the way in
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                if self._open is None or self._open[0] != "thinking":
                    out += self._open_block({"type": "thinking", "thinking": "", "signature": ""})
                out.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
                self.output_chars += len(reasoning)
            signature = delta.get("reasoning_signature")
            if isinstance(signature, str) and signature and self._open and self._open[0] == "thinking":
                self._signature = (self._signature or "") + signature
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._open is None or self._open[0] != "text":
                    out += self._open_block({"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": text}))
                self.output_chars += len(text)
            for call in delta.get("tool_calls") or ():
                out += self._tool_delta(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(out)

    def _tool_delta(self, call: dict[str, Any]) -> list[bytes]:
        position = call.get("index", 0)
        tool = self._tools.setdefault(position, _Tool())
        fn = call.get("function") or {}
        if call.get("id") and tool.block is None:
            tool.id = call["id"]
        if fn.get("name") and tool.block is None:
            tool.name = fn["name"]
        fragment = fn.get("arguments")
        out: list[bytes] = []
        if isinstance(fragment, str) and fragment:
            self.output_chars += len(fragment)
            if tool.block is not None and self._open == ("tool_use", tool.block):
                tool.sent.append(fragment)
                out.append(self._delta({"type": "input_json_delta", "partial_json": fragment}))
                return out
            if tool.closed:
                return out  # see the module docstring
            tool.pending.append(fragment)
        if tool.block is None and tool.name:
            current = self._open_tool_call()
            if current is None or _complete_object(current.sent):
                # The first waiting call in index order, which may be an earlier one than this.
                waiting = next(t for _, t in sorted(self._tools.items()) if t.block is None and t.name)
                out += self._open_tool(waiting)
            # else: another call is still streaming; this one waits, buffered (module docstring)
        return out

    def _open_tool_call(self) -> _Tool | None:
        if self._open is None or self._open[0] != "tool_use":
            return None
        return next((t for t in self._tools.values() if t.block == self._open[1]), None)

    def _open_tool(self, tool: _Tool) -> list[bytes]:
        tool.id = tool.id or "toolu_" + message_id()[4:]
        out = self._open_block({"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}})
        tool.block = self._open[1] if self._open else None
        self._used_tools = True
        if tool.pending:
            # Arguments that came before the name, all at once, or while another call streamed: one delta.
            arguments = "".join(tool.pending)
            tool.sent.append(arguments)
            out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            tool.pending.clear()
        return out

    def finish(self) -> bytes:
        """Close the open block, then message_delta (stop reason, usage) and message_stop."""
        if self.finished:
            return b""
        self.finished = True
        out = self._start()
        for _, tool in sorted(self._tools.items()):
            if tool.block is None and tool.pending and tool.name is None:
                tool.name = "unknown"  # arguments without a name: still delivered, visibly
            if tool.block is None and tool.name:
                out += self._open_tool(tool)  # buffered calls, whole, in index order
        out += self._close()
        usage = (
            anthropic_usage(self.usage)
            if self.usage
            else {
                "input_tokens": self._input_estimate,
                "output_tokens": tokens_for_chars(self.output_chars),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            }
        )
        out.append(
            sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self._finish, used_tools=self._used_tools), "stop_sequence": None},
                    "usage": usage,
                }
            )
        )
        out.append(sse({"type": "message_stop"}))
        return b"".join(out)

    def fail(self, etype: str, message: str) -> bytes:
        """An upstream failure after the response began: close what is open, then an error event."""
        if self.finished:
            return b""
        self.finished = True
        return b"".join([*self._start(), *self._close(), error_event(etype, message)])
