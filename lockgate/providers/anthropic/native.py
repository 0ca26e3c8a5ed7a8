"""Messages pass-through: a Messages body sent to an Anthropic deployment as it is, its events relayed.

Only the model is rewritten (both ways) and usage read on the way past; thinking
blocks, signatures, cache_control, unknown fields and betas go through untouched.
The stream is read to the end of the body (which follows message_stop at once),
so the connection goes back to the pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from lockgate.errors import GatewayError, ProviderBadResponse
from lockgate.providers.anthropic.errors import error_from_event
from lockgate.providers.anthropic.response import usage_from_anthropic
from lockgate.providers.base import Usage
from lockgate.providers.http import TRANSPORT_ERRORS, StreamTimer, iter_sse, json_object


def usage_of_message(message: dict[str, Any]) -> Usage:
    return usage_from_anthropic(message.get("usage"))


class NativeEvent(dict):  # type: ignore[type-arg]
    """One upstream event: its parsed data, and the exact bytes to relay (`raw`)."""

    raw: bytes = b""


class NativeStream:
    """An open Anthropic SSE stream, yielding its events (NativeEvent) as they arrive."""

    def __init__(self, resp: aiohttp.ClientResponse, what: str, timer: StreamTimer, public_model: str) -> None:
        self._resp = resp
        self._what = what
        self._timer = timer  # first-event, idle and max-duration deadlines (docs/routing.md, "Timeouts")
        self._public_model = public_model
        self._usage: dict[str, Any] = {}
        self._started = False
        self.usage: Usage | None = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        resp, timer = self._resp, self._timer
        events = iter_sse(resp.content, timer.max_bytes, self._what).__aiter__()
        finished = False
        try:
            while True:
                try:
                    name, data = await timer.next(events, resp)
                except StopAsyncIteration:
                    break  # the body's end: the connection is reusable
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
                    finished = True
                    self.usage = usage_from_anthropic(self._usage)
                out = NativeEvent(event)
                out.raw = b"event: " + (name or str(etype)).encode() + b"\ndata: " + data + b"\n\n"
                yield out
            if not finished:
                raise ProviderBadResponse(f"The upstream {self._what} ended its stream before finishing.")
        except GatewayError:
            self._partial()
            raise
        except TRANSPORT_ERRORS as err:
            self._partial()
            raise timer.error(err) from None
        finally:
            timer.cancel()
            resp.release()

    def _partial(self) -> None:
        if self.usage is None and self._started:
            # A stream that broke off still cost what was counted so far.
            self.usage = usage_from_anthropic(self._usage)
            self.usage.estimated = True

    async def aclose(self) -> None:
        self._timer.cancel()
        self._resp.close()
