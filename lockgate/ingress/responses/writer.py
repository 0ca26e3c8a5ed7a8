"""Group commit for stored Responses: the saves that arrive together share one transaction.

Every save still returns only once its row is committed, so the client never hears of a
response that is not in the database yet (a next turn on any replica finds it). What is
shared is the cost of committing: while one batch is being written, the saves that arrive
queue up and go in the next batch, one INSERT … executemany in one transaction. There is
no timer and no wait for a batch to fill: a lone save is written at once, alone.

Before this, every save took a pooled connection of its own: at 64 concurrent requests that
meant 15 SQLite connections (pool 5 + overflow 10) fighting for the one write lock, the
overflow ones opened and closed per request (a thread, a file, the PRAGMAs each time), and
~2.6 ms of gateway CPU per stored response. One writer at a time also suits SQLite, which
serialises writers anyway.

The queue is bounded by the requests in flight: each entry is a request waiting for its
own commit. The task runs while there is work and ends when the queue is empty.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger("lockgate.responses.store")

# Rows per transaction: large enough to absorb any burst this process makes, small enough
# that one transaction stays short (each stored response is a few kB).
MAX_BATCH = 64


class GroupCommit:
    """`await write(row)` returns once `row` is committed (or raises why it was not)."""

    def __init__(self, engine: AsyncEngine, statement: Any, *, max_batch: int = MAX_BATCH, direct: Any = None) -> None:
        self.engine = engine
        self.statement = statement
        self.max_batch = max_batch
        self.direct = direct  # the SQLite file's own connection (sqlite_writer.py), else the engine
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # transactions written (for tests and the benchmark)
        self.rows = 0

    async def write(self, row: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((row, done))
        if self._task is None:
            self._task = loop.create_task(self._run(), name="lockgate-responses-writer")
        # A request cancelled here (client gone) cancels only its wait: its row is still written.
        await done

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                await self._commit(batch)
        finally:
            self._task = None

    async def _commit(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        try:
            await self._insert([row for row, _ in batch])
        except Exception as err:
            if len(batch) == 1:
                _settle(batch[0][1], err)
                return
            # One bad row must not fail its neighbours: each again, alone.
            log.warning("responses_batch_failed", rows=len(batch), error=type(err).__name__)
            for one in batch:
                await self._commit([one])
            return
        self.batches += 1
        self.rows += len(batch)
        for _, done in batch:
            _settle(done, None)

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        if self.direct is not None:
            await self.direct(rows)
            return
        async with self.engine.begin() as conn:
            await conn.execute(self.statement, rows)

    async def aclose(self) -> None:
        """Wait for what is queued (at shutdown, before the engine goes)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)
        if self.direct is not None:
            await self.direct.aclose()


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():
        return  # its request was cancelled meanwhile (the row is written all the same)
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
