"""Pings in a Messages stream while the upstream is silent, at almost no cost per chunk.

Claude Code and the SDKs give up on a stream that says nothing for a while, so a ping goes
out whenever the client has been sent nothing for `interval_s`. Waiting for the next chunk
and for a deadline at once needs the read in a task of its own; the first version made one
task and one `asyncio.wait` (a future, callbacks, a timer) per chunk, which cost about as
much CPU as the rest of the stream's relay. Here one reader task per stream hands chunks
over through a deque, and one timer per stream is re-armed only when it fires: per chunk,
an append and at most one future.

The reader may run up to READ_AHEAD chunks ahead of the client. Not one: handing over
chunk by chunk costs an event-loop turn per chunk (and a separate small TCP write for each),
which profiled as dearer than the rest of the relay; a burst of chunks the upstream sent
together is read in one go and written back to back, as the chat relay does. Bounded, so a
client that reads slowly still slows the upstream down (aiohttp buffers more than this).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from lockgate.ingress.messages.stream import PING

# Claude Code and the SDKs time out a silent stream; Anthropic itself pings about this often.
# The default; the gateway passes server.sse_ping_interval_s.
PING_INTERVAL_S = 15.0

READ_AHEAD = 64

_END = object()  # the upstream's stream ended


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _PingRelay:
    def __init__(self, chunks: AsyncIterator[bytes], interval_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._chunks = chunks
        self._interval = interval_s
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None  # the client side, waiting for an item
        self._space: asyncio.Future[None] | None = None  # the reader, waiting for the client to take one
        self._last = self._loop.time()  # when the client was last given something
        self._timer: asyncio.TimerHandle | None = None
        self._reader = self._loop.create_task(self._read(), name="lockgate-messages-relay")

    async def _read(self) -> None:
        try:
            async for chunk in self._chunks:
                while len(self._items) >= READ_AHEAD:  # the client is behind: read no further ahead
                    self._space = self._loop.create_future()
                    await self._space
                self._put(chunk)
        except asyncio.CancelledError:
            raise  # aclose(): the client is gone
        except BaseException as err:  # the stream's own error, raised to the client side
            self._put(_Failed(err))
        else:
            self._put(_END)

    def _put(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fire(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # the client side is busy sending; it re-arms when it waits again
        if self._loop.time() >= self._last + self._interval - 0.001:
            waiter.set_result(None)  # woken with nothing to take: a ping
        else:
            self._timer = self._loop.call_at(self._last + self._interval, self._fire)

    async def next(self) -> Any:
        if not self._items:
            self._waiter = self._loop.create_future()
            if self._timer is None:
                self._timer = self._loop.call_at(self._last + self._interval, self._fire)
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._last = self._loop.time()
        if not self._items:
            return PING
        item = self._items.popleft()
        space = self._space
        if space is not None and not space.done():
            space.set_result(None)
        if isinstance(item, _Failed):
            raise item.error
        return item

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._reader.done():
            self._reader.cancel()
        try:
            await self._reader
        except BaseException:
            pass
        await self._chunks.aclose()  # type: ignore[attr-defined]


async def with_pings(chunks: AsyncIterator[bytes], interval_s: float = PING_INTERVAL_S) -> AsyncIterator[bytes]:
    """Relay `chunks`, sending a ping whenever the client has been sent nothing for `interval_s`."""
    relay = _PingRelay(chunks, interval_s)
    try:
        while True:
            item = await relay.next()
            if item is _END:
                return
            yield item
    finally:
        await relay.aclose()
