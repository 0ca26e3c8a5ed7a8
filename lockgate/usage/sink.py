"""The usage sink: batches records (by count and by time) into the SQL store, spooling when it can't.

It runs in the SinkQueue's task and its own flusher task, never on a request's
path. A batch goes to the database when ``batch_size`` records are waiting or
``flush_interval_s`` has passed. When a write fails or takes longer than
``write_timeout_s`` the batch is appended to the durable spool instead; while
the spool holds anything, new batches are spooled behind it (so records reach
the database in order) and the spool is replayed, oldest batch first, once the
database answers again. ``aclose`` (SIGTERM) writes what is buffered, to the
database or else to the spool.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import structlog

from lockgate.background import Ticker
from lockgate.records import RequestRecord
from lockgate.usage.rows import Row, to_row
from lockgate.usage.spool import Spool

log = structlog.get_logger("lockgate.usage")

Writer = Callable[[list[Row]], Awaitable[int]]


class UsageSink:
    name = "usage"

    def __init__(
        self,
        write: Writer,
        spool_dir: str | Path,
        *,
        batch_size: int = 200,
        flush_interval_s: float = 1.0,
        write_timeout_s: float = 5.0,
        retry_max_s: float = 5.0,
        max_buffer: int | None = None,
    ) -> None:
        self._write_db = write
        self.spool = Spool(spool_dir)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.write_timeout_s = write_timeout_s
        self.retry_max_s = retry_max_s
        # Past this many buffered rows (the database is slow), batches go straight to the spool.
        self.max_buffer = max_buffer or batch_size * 10
        self._buffer: list[Row] = []
        self._io = asyncio.Lock()  # one writer of the database and the spool at a time
        # Flushes every flush_interval_s, or at once when a batch is full.
        self._flusher = Ticker(self.flush, flush_interval_s, "lockgate-usage-writer", error_event="usage_flush_failed")
        self._retry_at = 0.0
        self._retry_s = 0.0
        self._closed = False
        # Counters for metrics and tests.
        self.written = 0
        self.spooled = 0
        self.write_failures = 0

    async def start(self) -> "UsageSink":
        adopted = await asyncio.to_thread(self.spool.adopt_orphans)
        if adopted:
            log.info("usage_spool_adopted", batches=adopted)
        self._flusher.start()
        return self

    # --- the Sink protocol ---------------------------------------------------------------

    async def handle(self, record: RequestRecord) -> None:
        self._buffer.append(to_row(record))
        if len(self._buffer) >= self.batch_size:
            self._flusher.wake()
        if len(self._buffer) >= self.max_buffer:
            # The writer is stuck on a slow database: keep memory bounded, keep the rows durable
            # (waits at most write_timeout_s for the writer to let go of the spool).
            batch, self._buffer = self._buffer[: self.batch_size], self._buffer[self.batch_size :]
            await self._spool(batch)

    async def aclose(self) -> None:
        """Flush everything: to the database if it answers, else to the spool."""
        self._closed = True
        await self._flusher.stop()
        self._retry_at = 0.0
        while self._buffer:
            batch, self._buffer = self._buffer[: self.batch_size], self._buffer[self.batch_size :]
            await self._flush_batch(batch)
        pending = self.spool.pending
        await asyncio.to_thread(self.spool.close)
        log.info("usage_sink_closed", written=self.written, spooled=self.spooled, spool_pending=pending)

    # --- batching ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write what is buffered (in batches), and replay the spool when it is due."""
        while self._buffer:
            batch, self._buffer = self._buffer[: self.batch_size], self._buffer[self.batch_size :]
            await self._flush_batch(batch)
        if self.spool.pending and time.monotonic() >= self._retry_at:
            async with self._io:
                await self._replay()

    async def _flush_batch(self, batch: list[Row]) -> None:
        async with self._io:
            if self.spool.pending:
                # Behind older spooled batches: keep the order, then try to drain.
                await self._spool_locked(batch)
                if time.monotonic() >= self._retry_at:
                    await self._replay()
                return
            if await self._try_write(batch):
                return
            await self._spool_locked(batch)

    async def _try_write(self, batch: list[Row]) -> bool:
        try:
            self.written += await asyncio.wait_for(self._write_db(batch), self.write_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # down, slow (timeout) or refusing: spool it
            self.write_failures += 1
            self._retry_s = min(self.retry_max_s, max(self.flush_interval_s, self._retry_s * 2 or 0.25))
            self._retry_at = time.monotonic() + self._retry_s
            log.warning("usage_db_write_failed", error=type(err).__name__, rows=len(batch), retry_in_s=self._retry_s)
            return False
        self._retry_s = 0.0
        return True

    async def _replay(self) -> None:
        """Oldest spooled batch first; stop at the first failure (the next tick retries)."""
        replayed = 0
        while True:
            item = await asyncio.to_thread(self.spool.next_batch)
            if item is None:
                break
            offset, rows = item
            if not await self._try_write(rows):
                return
            await asyncio.to_thread(self.spool.mark_replayed, offset)
            replayed += 1
        if replayed:
            log.info("usage_spool_replayed", batches=replayed)

    async def _spool(self, batch: list[Row]) -> None:
        async with self._io:
            await self._spool_locked(batch)

    async def _spool_locked(self, batch: list[Row]) -> None:
        try:
            await asyncio.to_thread(self.spool.append, batch)
        except OSError:
            # Disk full or gone: nothing durable is left; say so loudly, and count what is lost.
            log.error("usage_spool_write_failed", rows=len(batch), exc_info=True)
            raise
        self.spooled += len(batch)

    def stats(self) -> dict[str, Any]:
        return {
            "buffered": len(self._buffer),
            "written": self.written,
            "spooled": self.spooled,
            "write_failures": self.write_failures,
            "spool_pending": self.spool.pending,
        }
