"""The usage sink: every record, batched into the SQL store, spooled to disk when the store can't keep up.

This is the accounting path: it never drops a record. ``accept`` is called on
the request path and only appends to a memory buffer (no await, no I/O). Two
tasks of its own empty that buffer:

* the **writer** sends a batch to the database when ``batch_size`` records are
  waiting or ``flush_interval_s`` has passed. A write that fails or takes longer
  than ``write_timeout_s`` is appended to the durable spool instead, and for a
  back-off (at most ``retry_max_s``) later batches go straight to the spool.
  A slow write is never cancelled (a SQLite write cannot be, and a cancelled
  one may keep its lock): it is left to finish while its batch is spooled.
  Spooled batches are replayed, oldest first, once the database answers again.
* the **spiller** moves records to the spool whenever the buffer reaches
  ``max_buffer`` (the database is slower than the traffic, or the writer is
  waiting on it): it never waits on the database, so memory stays bounded while
  a write hangs.

Order is not guaranteed across the two (a spilled record may reach the database
after a newer one); writes are idempotent by request id, so a record written
twice (a replay after a timeout that did commit) counts once. If the spool's
disk fails too, records stay in memory (past the bound) rather than being lost.
``aclose`` (SIGTERM) writes what is buffered, to the database or else to the spool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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
        # Records held in memory at most (while the spool's disk answers); past it the spiller runs.
        self.max_buffer = max(max_buffer or batch_size * 10, batch_size)
        self._buffer: list[RequestRecord] = []
        self._writer = Ticker(self.flush, flush_interval_s, "lockgate-usage-writer", error_event="usage_flush_failed")
        self._spiller = Ticker(self.spill, None, "lockgate-usage-spiller", error_event="usage_spill_failed")
        self._retry_at = 0.0
        self._retry_s = 0.0
        self._spill_retry_at = 0.0
        self._inflight: asyncio.Future[int] | None = None  # a write that outlived write_timeout_s
        self._closed = False
        # Counters for metrics and tests.
        self.written = 0
        self.spooled = 0
        self.write_failures = 0
        self.spool_failures = 0

    async def start(self) -> "UsageSink":
        adopted = await asyncio.to_thread(self.spool.adopt_orphans)
        if adopted:
            log.info("usage_spool_adopted", batches=adopted)
        self._writer.start()
        self._spiller.start()
        return self

    # --- the AccountingSink protocol -------------------------------------------------------

    def accept(self, record: RequestRecord) -> None:
        """On the request path: an append, and a wake-up when a batch is full or memory is."""
        if self._closed:
            # Nothing should emit after shutdown has flushed; if it does, it must be seen.
            log.error("usage_record_after_close", request_id=record.request_id)
        buffer = self._buffer
        buffer.append(record)
        if len(buffer) >= self.batch_size:
            self._writer.wake()
            if len(buffer) >= self.max_buffer:
                self._spiller.wake()

    async def aclose(self) -> None:
        """Flush everything: to the database if it answers, else to the spool."""
        await self._writer.stop()
        await self._spiller.stop()
        if self._inflight is not None:  # a slow write still running: give it its time to finish
            await asyncio.wait((self._inflight,), timeout=self.write_timeout_s)
        self._retry_at = 0.0
        while self._buffer:
            if not await self._write_or_spool(self._take(self.batch_size)):
                break  # neither the database nor the disk takes them: said loudly below
        if self.spool.pending and not self._backing_off():
            await self._replay()  # the database answers: leave no spool behind
        self._closed = True
        if self._buffer:
            log.error("usage_records_lost", records=len(self._buffer), reason="database and spool both failed at shutdown")
        pending = self.spool.pending
        await asyncio.to_thread(self.spool.close)
        log.info("usage_sink_closed", written=self.written, spooled=self.spooled, spool_pending=pending)

    # --- the writer ------------------------------------------------------------------------

    async def flush(self) -> None:
        """Replay the spool when due, then write what was buffered when the tick began, in batches."""
        if self.spool.pending and not self._backing_off():
            await self._replay()
        # Records that arrive meanwhile wait for the next tick (or wake it): no stream of tiny writes.
        left = len(self._buffer)
        while left > 0 and self._buffer:
            batch = self._take(min(self.batch_size, left))
            left -= len(batch)
            if not await self._write_or_spool(batch):
                break  # neither took it: kept in memory, tried again next tick

    def _take(self, n: int) -> list[RequestRecord]:
        batch = self._buffer[:n]
        del self._buffer[:n]
        return batch

    def _backing_off(self) -> bool:
        return time.monotonic() < self._retry_at

    async def _write_or_spool(self, records: list[RequestRecord]) -> bool:
        """One batch to the database, or to the spool; False (records back in memory) if neither took it."""
        rows = [to_row(r) for r in records]
        try:
            if not self._backing_off() and await self._try_write(rows):
                return True
            if await self._spool(rows):
                return True
        except asyncio.CancelledError:
            # Stopped mid-write (shutdown): aclose writes them again; a duplicate collapses by request id.
            self._buffer[:0] = records
            raise
        self._buffer[:0] = records
        return False

    async def _try_write(self, batch: list[Row]) -> bool:
        """One database write, waited for at most write_timeout_s; False if it failed or is still running."""
        if self._inflight is not None:
            return self._failed("WriteStillRunning", len(batch))
        # Never cancelled: a SQLite write runs on in its thread whatever we do, and a cancelled one
        # can leave its connection holding the write lock. One past its time is left to finish (its
        # batch is spooled meanwhile: a late commit and the replay collapse by request id).
        write = asyncio.ensure_future(self._write_db(batch))
        self._inflight = write
        try:
            await asyncio.wait((write,), timeout=self.write_timeout_s)
        finally:  # also when we are cancelled (shutdown): the write goes on, aclose waits for it
            if not write.done():
                write.add_done_callback(self._late_write_done)
            else:
                self._inflight = None
        if not write.done():
            return self._failed("TimeoutError", len(batch))
        err = write.exception()
        if err is not None:  # down or refusing: spool it
            return self._failed(type(err).__name__, len(batch))
        self.written += write.result()
        self._retry_s = 0.0
        return True

    def _late_write_done(self, write: asyncio.Future[int]) -> None:
        self._inflight = None
        if write.cancelled():
            return
        err = write.exception()  # retrieved, so asyncio does not report it as lost
        if err is None:
            self.written += write.result()
        else:
            log.warning("usage_db_late_write_failed", error=type(err).__name__)

    def _failed(self, error: str, rows: int) -> bool:
        self.write_failures += 1
        self._retry_s = min(self.retry_max_s, max(self.flush_interval_s, self._retry_s * 2 or 0.25))
        self._retry_at = time.monotonic() + self._retry_s
        log.warning("usage_db_write_failed", sink=self.name, error=error, rows=rows, retry_in_s=self._retry_s)
        return False

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

    # --- the spiller -----------------------------------------------------------------------

    async def spill(self) -> None:
        """Move the oldest records to the spool until the buffer is back to half of max_buffer."""
        if time.monotonic() < self._spill_retry_at:
            return  # the disk failed a moment ago: not once per request
        while len(self._buffer) >= self.max_buffer:
            records = self._take(len(self._buffer) - self.max_buffer // 2)
            try:
                n = await asyncio.to_thread(self._spill_to_disk, records)
            except asyncio.CancelledError:
                self._buffer[:0] = records  # maybe spooled already: a duplicate collapses by request id
                raise
            except OSError:
                self._buffer[:0] = records  # over the bound, but kept: the writer may still reach the database
                self.spool_failures += 1
                self._spill_retry_at = time.monotonic() + 1.0
                log.error("usage_spool_write_failed", rows=len(records), buffered=len(self._buffer), exc_info=True)
                return
            self.spooled += n
            log.warning("usage_buffer_spilled", rows=n, buffered=len(self._buffer))

    def _spill_to_disk(self, records: list[RequestRecord]) -> int:
        # In a thread: the rows are built here too, off the event loop (records are immutable).
        rows = [to_row(r) for r in records]
        self.spool.append_many([rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)])
        return len(rows)

    async def _spool(self, batch: list[Row]) -> bool:
        try:
            await asyncio.to_thread(self.spool.append, batch)
        except OSError:
            # Disk full or gone as well: the caller keeps the records in memory; say so loudly.
            self.spool_failures += 1
            log.error("usage_spool_write_failed", rows=len(batch), exc_info=True)
            return False
        self.spooled += len(batch)
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "buffered": len(self._buffer),
            "written": self.written,
            "spooled": self.spooled,
            "write_failures": self.write_failures,
            "spool_failures": self.spool_failures,
            "spool_pending": self.spool.pending,
        }
