"""Canonical chat.completion.chunk stream -> Responses SSE events. A state machine, no I/O.

What the SDKs' strict stream helpers (openai-python ResponseStreamState, openai-node)
require, and peers broke: ``response.created`` first and exactly once, the same
response id throughout, ``sequence_number`` from 0 up by one on every event, each
``event:`` line naming the data's type; ``output_item.added`` before any content of
its ``output_index``, indexes dense and in order of first appearance;
``content_part.added`` before text deltas; empty templates (``text: ""``,
``arguments: ""``); a final ``response.completed`` (or ``response.incomplete``)
carrying the whole output and usage; a break mid-stream ends in ``response.failed``.

Text and reasoning items close when another item starts. Function calls stay open
until the end, so arguments that continue after a later call began still reach their
own item: tool arguments are never lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from lockgate.ingress.responses.response import call_item, finish, message_item, new_id, reasoning_item, shell
from lockgate.providers.base import Usage


def sse(event: dict[str, Any]) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass(slots=True)
class _Call:
    call_id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)
    index: int | None = None  # output_index once the item was added
    item_id: str = ""


class ResponsesStreamEncoder:
    """Feed it canonical chunks in order; it returns the SSE bytes each one makes."""

    def __init__(self, request: dict[str, Any], *, response_id: str, model: str, input_tokens: int = 0) -> None:
        self.response = shell(request, response_id=response_id, model=model)
        self._seq = 0
        self._started = False
        self._open: tuple[str, int] | None = None  # ("message" | "reasoning", output_index) of the open item
        self._text: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._finish: Any = None
        self._input_estimate = input_tokens
        self.output_chars = 0
        self.usage: Usage | None = None
        self.finished = False

    # --- framing ---------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse(event)

    def _snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": list(self.response["output"])}

    def start(self) -> bytes:
        """response.created and response.in_progress, before any chunk: the turn is seen to begin at once."""
        if self._started:
            return b""
        self._started = True
        return self._event("response.created", response=self._snapshot()) + self._event(
            "response.in_progress", response=self._snapshot()
        )

    def _add(self, item: dict[str, Any]) -> tuple[int, bytes]:
        index = len(self.response["output"])
        self.response["output"].append(item)
        return index, self._event("response.output_item.added", output_index=index, item=dict(item))

    def _close_open(self) -> bytes:
        if self._open is None:
            return b""
        kind, index = self._open
        self._open = None
        item = self.response["output"][index]
        text = "".join(self._text)
        self._text = []
        if kind == "message":
            final = message_item(item["id"], text)
            part = final["content"][0]
            out = self._event(
                "response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text, logprobs=[]
            )
            out += self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part)
        else:
            final = reasoning_item(item["id"], text)
            out = self._event("response.reasoning_text.done", item_id=item["id"], output_index=index, content_index=0, text=text)
            out += self._event(
                "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=final["content"][0]
            )
        self.response["output"][index] = final
        return out + self._event("response.output_item.done", output_index=index, item=final)

    def _open_item(self, kind: str) -> bytes:
        out = self._close_open()
        if kind == "message":
            item = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            item = {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": []}
            part = {"type": "reasoning_text", "text": ""}
        index, added = self._add(item)
        self._open = (kind, index)
        return (
            out
            + added
            + self._event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)
        )

    def _text_delta(self, kind: str, delta: str) -> bytes:
        out = b"" if self._open is not None and self._open[0] == kind else self._open_item(kind)
        assert self._open is not None
        index = self._open[1]
        self._text.append(delta)
        self.output_chars += len(delta)
        item_id = self.response["output"][index]["id"]
        event = "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        extra: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
        return out + self._event(event, item_id=item_id, output_index=index, content_index=0, delta=delta, **extra)

    # --- chunks -----------------------------------------------------------------------------------

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self.finished:
            return b""
        out = self.start()
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # a Response has one answer
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out += self._text_delta("reasoning", reasoning)
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._text_delta("message", text)
            for call in delta.get("tool_calls") or ():
                out += self._call_delta(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def _call_delta(self, delta: dict[str, Any]) -> bytes:
        call = self._calls.setdefault(delta.get("index", 0), _Call())
        fn = delta.get("function") or {}
        if delta.get("id") and call.call_id is None:
            call.call_id = delta["id"]
        if fn.get("name") and call.index is None:
            call.name = fn["name"]
        fragment = fn.get("arguments")
        out = b""
        if call.index is None and call.name:
            out += self._add_call(call)
        if isinstance(fragment, str) and fragment:
            self.output_chars += len(fragment)
            call.arguments.append(fragment)
            if call.index is not None:
                out += self._event(
                    "response.function_call_arguments.delta", item_id=call.item_id, output_index=call.index, delta=fragment
                )
        return out

    def _add_call(self, call: _Call) -> bytes:
        out = self._close_open()
        call.item_id = new_id("fc")
        call.call_id = call.call_id or new_id("call")
        index, added = self._add(call_item(call.item_id, call.call_id, call.name or "", "", status="in_progress"))
        call.index = index
        out += added
        if call.arguments:
            # Arguments that came before the name: one delta, never lost.
            out += self._event(
                "response.function_call_arguments.delta", item_id=call.item_id, output_index=index, delta="".join(call.arguments)
            )
        return out

    def _close_calls(self) -> bytes:
        out = b""
        for call in self._calls.values():
            if call.index is None and call.arguments:
                call.name = call.name or "unknown"  # arguments without a name: still delivered, visibly
                out += self._add_call(call)
        for call in sorted((c for c in self._calls.values() if c.index is not None), key=lambda c: c.index or 0):
            arguments = "".join(call.arguments)
            final = call_item(call.item_id, call.call_id or "", call.name or "", arguments)
            self.response["output"][call.index] = final  # type: ignore[index]
            out += self._event(
                "response.function_call_arguments.done",
                item_id=call.item_id,
                output_index=call.index,
                name=call.name,
                arguments=arguments,
            )
            out += self._event("response.output_item.done", output_index=call.index, item=final)
        return out

    def finish(self) -> bytes:
        """Close every item, then response.completed (or response.incomplete) with the whole output and usage."""
        if self.finished:
            return b""
        self.finished = True
        out = self.start() + self._close_open() + self._close_calls()
        usage = self.usage or Usage(
            prompt_tokens=self._input_estimate, completion_tokens=(self.output_chars + 3) // 4, estimated=True
        )
        finish(self.response, self._finish, usage)
        kind = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, response=self._snapshot())

    def fail(self, code: str, message: str) -> bytes:
        """An upstream failure after the response began: response.failed, never a stream that looks complete."""
        if self.finished:
            return b""
        self.finished = True
        out = self.start()
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": message}
        self.response["usage"] = None
        return out + self._event("response.failed", response=self._snapshot())
