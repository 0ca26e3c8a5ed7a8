"""One reader for every upstream SSE stream: deadlines, transport errors and the connection's release.

A provider's stream subclasses `UpstreamStream` and says only what its dialect means: what an
event becomes (`on_event`), whether the stream ended properly (`on_end`), and what a broken
stream still cost (`on_broken`). The loop, the timer (docs/routing.md, "Timeouts") and the
release of the connection are written once, here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Generic, TypeVar

import aiohttp

from lockgate.errors import GatewayError
from lockgate.providers.base import Usage
from lockgate.providers.http import TRANSPORT_ERRORS, StreamTimer, iter_sse

Item = TypeVar("Item")


class UpstreamStream(Generic[Item]):
    """An open upstream SSE stream, yielding the items `on_event` makes of each event as it arrives."""

    def __init__(self, resp: aiohttp.ClientResponse, what: str, timer: StreamTimer) -> None:
        self._resp = resp
        self._what = what
        self._timer = timer
        self.done = False  # set by on_event at the dialect's own end marker: stop reading there
        self.draining = False  # set when the body's rest is read in the background (the connection is handed on)
        self.usage: Usage | None = None

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._items()

    def on_event(self, name: str | None, data: bytes) -> Iterable[Item]:
        """What to yield for one event; raise the upstream's error event as a GatewayError."""
        raise NotImplementedError

    def on_end(self) -> None:
        """The body ended (or `done` was set): raise if the stream stopped before finishing."""

    def on_broken(self) -> None:
        """The stream failed part way: keep what it cost so far in `usage`."""

    async def _items(self) -> AsyncIterator[Item]:
        resp, timer = self._resp, self._timer
        events = iter_sse(resp.content, timer.max_bytes, self._what).__aiter__()
        try:
            while not self.done:
                try:
                    name, data = await timer.next(events, resp)
                except StopAsyncIteration:
                    break  # the body's end: the connection is reusable
                for item in self.on_event(name, data):
                    yield item
            self.on_end()
        except GatewayError:
            self.on_broken()
            raise
        except TRANSPORT_ERRORS as err:
            self.on_broken()
            raise timer.error(err) from None
        finally:
            timer.cancel()
            if not self.draining:
                resp.release()

    async def aclose(self) -> None:
        # Closing (not releasing) drops a half-read connection instead of draining it.
        self._timer.cancel()
        if not self.draining:
            self._resp.close()
