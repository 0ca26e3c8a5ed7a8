"""Messages pass-through: a Messages body sent to an Anthropic deployment as it is, its events relayed.

Only the model is rewritten (both ways) and usage read on the way past; thinking
blocks, signatures, cache_control, unknown fields and betas go through untouched.
The stream is read to the end of the body (which follows message_stop at once),
so the connection goes back to the pool.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from lockgate.errors import ProviderTruncated
from lockgate.providers.anthropic.errors import error_from_event
from lockgate.providers.anthropic.response import usage_from_anthropic
from lockgate.providers.base import Usage
from lockgate.providers.http import StreamTimer, json_object
from lockgate.providers.sse_stream import UpstreamStream


def usage_of_message(message: dict[str, Any]) -> Usage:
    return usage_from_anthropic(message.get("usage"))


class NativeEvent(dict):  # type: ignore[type-arg]
    """One upstream event: its parsed data, and the exact bytes to relay (`raw`)."""

    raw: bytes = b""


class NativeStream(UpstreamStream[NativeEvent]):
    """An open Anthropic SSE stream, yielding its events (NativeEvent) as they arrive."""

    def __init__(self, resp: aiohttp.ClientResponse, what: str, timer: StreamTimer, public_model: str) -> None:
        super().__init__(resp, what, timer)
        self._public_model = public_model
        self._usage: dict[str, Any] = {}
        self._started = False
        self._finished = False

    def on_event(self, name: str | None, data: bytes) -> tuple[NativeEvent]:
        event = json_object(data, self._what)
        etype = event.get("type")
        if etype == "error":
            raise error_from_event(event, self._what)
        if etype == "message_start" and isinstance(event.get("message"), dict):
            self._started = True
            message = event["message"]
            usage = message.get("usage")
            if isinstance(usage, dict):
                # output_tokens here is a placeholder; message_delta's count replaces it.
                self._usage = {k: v for k, v in usage.items() if k != "output_tokens"}
            message["model"] = self._public_model
            data = orjson.dumps(event)
        elif etype == "message_delta" and isinstance(event.get("usage"), dict):
            self._usage.update({k: v for k, v in event["usage"].items() if v is not None})
        elif etype == "message_stop":
            self._finished = True
            self.usage = usage_from_anthropic(self._usage)
        out = NativeEvent(event)
        out.raw = b"event: " + (name or str(etype)).encode() + b"\ndata: " + data + b"\n\n"
        return (out,)

    def on_end(self) -> None:
        # The stream is read to the body's end (which follows message_stop at once): the connection is reusable.
        if not self._finished:
            raise ProviderTruncated(f"The upstream {self._what} ended its stream before finishing.")

    def on_broken(self) -> None:
        if self.usage is None and self._started:
            # A stream that broke off still cost what was counted so far.
            self.usage = usage_from_anthropic(self._usage, strict=False)
            self.usage.estimated = True
