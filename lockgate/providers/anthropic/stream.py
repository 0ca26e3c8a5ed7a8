"""Anthropic stream events -> OpenAI chunks: a small state machine fed one event at a time. No I/O.

Usage is split across events: ``message_start`` carries the input side (and a
placeholder ``output_tokens`` that must not be added), ``message_delta`` the
cumulative output count. Both are merged into one usage chunk after the finish
chunk, as OpenAI sends it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from lockgate.errors import ProviderBadResponse, ProviderTruncated
from lockgate.providers.anthropic.errors import error_from_event
from lockgate.providers.anthropic.request import TranslationContext
from lockgate.providers.anthropic.response import finish_reason, unwrap_json_text, usage_from_anthropic
from lockgate.providers.base import Usage, openai_usage, tokens_for_chars


class ChunkTranslator:
    """Feed it Anthropic events in order; it returns the chat.completion.chunk dicts each one makes."""

    def __init__(self, ctx: TranslationContext, *, what: str = "Anthropic model", created: int | None = None) -> None:
        self._ctx = ctx
        self._what = what
        self._created = int(time.time()) if created is None else created
        self._id = ""
        self._model = ctx.model
        self._started = False
        # Anthropic block index -> OpenAI tool_calls index (counts tool calls only).
        self._tool_index: dict[int, int] = {}
        self._json_blocks: set[int] = set()
        self._json_buffer: dict[int, list[str]] = {}
        self._tool_calls = 0
        # Argument characters sent per block, so a call with no input still ends with valid JSON.
        self._args_sent: dict[int, int] = {}
        self._json_answered = False
        self._stop_reason: str | None = None
        self._usage_raw: dict[str, Any] = {}
        self._emitted_chars = 0
        self.finished = False
        self.usage: Usage | None = None

    # --- chunk shapes -------------------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            # OpenAI's shape with include_usage; the pipeline removes it when the client did not ask.
            "usage": None,
        }

    def _content(self, text: str) -> dict[str, Any]:
        self._emitted_chars += len(text)
        return self._chunk({"content": text})

    # --- events -------------------------------------------------------------------------------

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if self.finished:
            return []  # the answer is complete; nothing after message_stop changes it
        etype = event.get("type")
        if etype == "error":
            self._record_partial_usage()
            raise error_from_event(event, self._what)
        if etype == "message_start":
            return self._message_start(event.get("message"))
        if not self._started:
            if etype == "ping":
                return []
            raise ProviderBadResponse(f"The upstream {self._what} sent {etype!r} before message_start.")
        if etype == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block"))
        if etype == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta"))
        if etype == "content_block_stop":
            return self._block_stop(event.get("index"))
        if etype == "message_delta":
            self._message_delta(event)
            return []
        if etype == "message_stop":
            return self._message_stop()
        return []  # ping, and event types newer than this code

    def _message_start(self, message: Any) -> list[dict[str, Any]]:
        if not isinstance(message, dict) or self._started:
            raise ProviderBadResponse(f"The upstream {self._what} sent an unexpected message_start.")
        self._started = True
        self._id = str(message.get("id") or "")
        self._model = str(message.get("model") or self._model)
        usage = message.get("usage")
        if isinstance(usage, dict):
            # output_tokens here is a placeholder; message_delta's cumulative count replaces it.
            self._usage_raw = {k: v for k, v in usage.items() if k != "output_tokens"}
        return [self._chunk({"role": "assistant", "content": "", "refusal": None})]

    def _block_start(self, index: Any, block: Any) -> list[dict[str, Any]]:
        if not isinstance(index, int) or not isinstance(block, dict):
            raise ProviderBadResponse(f"The upstream {self._what} sent a malformed content_block_start.")
        btype = block.get("type")
        if btype == "text" and block.get("text"):
            return [self._content(str(block["text"]))]
        if btype == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": str(block["thinking"])})]
        if btype != "tool_use":
            return []
        if self._ctx.json_tool and block.get("name") == self._ctx.json_tool:
            self._json_blocks.add(index)
            self._json_answered = True
            if self._ctx.json_wrapped:
                self._json_buffer[index] = []
            return []
        self._tool_index[index] = position = self._tool_calls
        self._tool_calls += 1
        call = {
            "index": position,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": block.get("name"), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: Any) -> list[dict[str, Any]]:
        if not isinstance(delta, dict):
            raise ProviderBadResponse(f"The upstream {self._what} sent a malformed content_block_delta.")
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            return [self._content(text)] if isinstance(text, str) and text else []
        if dtype == "thinking_delta":
            text = delta.get("thinking")
            return [self._chunk({"reasoning_content": text})] if isinstance(text, str) and text else []
        if dtype == "input_json_delta":
            fragment = delta.get("partial_json")
            if not isinstance(fragment, str) or not fragment:
                return []
            if index in self._json_buffer:
                self._json_buffer[index].append(fragment)
                return []
            if index in self._json_blocks:
                self._args_sent[index] = self._args_sent.get(index, 0) + len(fragment)
                return [self._content(fragment)]  # the response_format answer, as it is written
            if index not in self._tool_index:
                raise ProviderBadResponse(f"The upstream {self._what} sent tool input for an unknown block.")
            self._args_sent[index] = self._args_sent.get(index, 0) + len(fragment)
            self._emitted_chars += len(fragment)
            call = {"index": self._tool_index[index], "function": {"arguments": fragment}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # signature_delta, citations_delta: no OpenAI field

    def _block_stop(self, index: Any) -> list[dict[str, Any]]:
        if not isinstance(index, int):
            return []
        parts = self._json_buffer.pop(index, None)
        if parts is not None:
            return [self._content(unwrap_json_text("".join(parts)))]
        if self._args_sent.get(index) or (index not in self._tool_index and index not in self._json_blocks):
            return []
        # A tool input sent as no fragments at all (or only empty ones) is the empty object.
        self._args_sent[index] = 2
        if index in self._json_blocks:
            return [self._content("{}")]
        return [self._chunk({"tool_calls": [{"index": self._tool_index[index], "function": {"arguments": "{}"}}]})]

    def _message_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason"):
            self._stop_reason = delta["stop_reason"]
        usage = event.get("usage")
        if isinstance(usage, dict):
            # Cumulative counts; newer APIs may also restate input and cache fields (null when not).
            self._usage_raw.update({k: v for k, v in usage.items() if v is not None})

    def _message_stop(self) -> list[dict[str, Any]]:
        usage = usage_from_anthropic(self._usage_raw)  # refused before the stream counts as finished
        self.finished = True
        self.usage = usage
        finish = finish_reason(self._stop_reason, answered_with_json_tool=self._json_answered and not self._tool_calls)
        usage_chunk = self._chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = openai_usage(usage)
        return [self._chunk({}, finish), usage_chunk]

    def _record_partial_usage(self) -> None:
        # A stream that broke off still cost its input tokens; the output is counted from what was relayed.
        if self._started and self.usage is None:
            known = usage_from_anthropic(self._usage_raw, strict=False)
            self.usage = replace(
                known,
                completion_tokens=known.completion_tokens or tokens_for_chars(self._emitted_chars),
                estimated=True,
            )

    def broken_off(self) -> ProviderBadResponse:
        """The error for a stream that ended without message_stop (and its partial usage recorded)."""
        self._record_partial_usage()
        return ProviderTruncated(f"The upstream {self._what} ended its stream before finishing.")


def text_completion_chunk(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """A chat.completion.chunk as a legacy text_completion chunk (None for ones with nothing to say)."""
    out = {"id": chunk["id"], "object": "text_completion", "created": chunk["created"], "model": chunk["model"]}
    if not chunk["choices"]:
        usage = chunk.get("usage") or {}
        counts = {k: usage.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        return {**out, "choices": [], "usage": counts}
    choice = chunk["choices"][0]
    text = choice["delta"].get("content") or ""
    if not text and not choice["finish_reason"]:
        return None  # the role chunk and reasoning deltas have no legacy equivalent
    return {**out, "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": choice["finish_reason"]}]}
