"""One immutable record per request (and per upstream attempt), handed to sinks off the hot path.

The request path only builds a record and calls ``SinkQueue.emit``: no await,
no I/O, nothing that can block. From there records take two paths:

* **Accounting** (the usage writer): ``accept`` takes every record, always.
  Such a sink keeps its own bounded memory buffer and moves what overflows to a
  durable spool from its own task; it never drops, so a slow database costs no
  spend.
* **Best effort** (access log, metrics, PostHog): one lane per sink, each a
  bounded queue drained by its own task, so one slow sink cannot starve the
  others. A full lane drops the record and counts the drop for that sink.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

log = structlog.get_logger("lockgate.records")

_YIELD_EVERY = 64


@dataclass(frozen=True, slots=True)
class RequestRecord:
    request_id: str
    endpoint: str  # chat | completions | embeddings
    public_model: str | None
    status: int
    started_at: float  # unix seconds
    latency_ms: float
    streamed: bool = False
    # Who asked.
    key_id: str | None = None
    user: str | None = None
    team: str | None = None
    # Who answered (the last attempt's deployment).
    provider: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    api_base: str | None = None
    attempts: int = 0
    # What it cost.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    cost_usd: float | None = 0.0  # USD; None: tokens were used but the price is unknown
    # Its split (usage.pricing.call_cost): telemetry reads it; the usage store keeps only the total.
    input_cost_usd: float | None = 0.0
    output_cost_usd: float | None = 0.0
    ttft_ms: float | None = None
    # How it ended.
    error_type: str | None = None  # the GatewayError kind, e.g. provider_timeout
    error_message: str | None = None
    partial: bool = False  # a stream cut short (client cancel or upstream break)
    # For per-attempt records: the request they belong to and their number.
    attempt: int | None = None
    parent_request_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # {"input": messages, "output_choices": choices}: set only when analytics may see content.
    content: dict[str, Any] | None = field(default=None, repr=False)


class Sink(Protocol):
    """A best-effort sink: receives records, in order, from its lane's task (never from the request path)."""

    name: str

    async def handle(self, record: RequestRecord) -> None: ...

    async def aclose(self) -> None: ...


class AccountingSink(Protocol):
    """A sink that must see every record: ``accept`` is called on the request path and must not block."""

    name: str

    def accept(self, record: RequestRecord) -> None: ...

    async def aclose(self) -> None: ...


class Lane:
    """One best-effort sink behind its own bounded queue and drain task."""

    def __init__(self, sink: Sink, maxsize: int) -> None:
        self.sink = sink
        self.name = sink.name
        self.maxsize = maxsize
        # A deque and one waiter future instead of asyncio.Queue: offer() is an append, and it
        # wakes the task only when the task is idle, so a busy lane costs the request path nothing more.
        self._queue: deque[RequestRecord] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        self.delivered = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"lockgate-sink-{self.name}")

    def offer(self, record: RequestRecord) -> None:
        if len(self._queue) >= self.maxsize:
            self.dropped += 1
            return
        self._queue.append(record)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        queue, handle = self._queue, self.sink.handle
        while True:
            while queue:
                record = queue.popleft()
                try:
                    await handle(record)
                except Exception:  # a sink's bug must not stop its lane
                    log.exception("sink_failed", sink=self.name, request_id=record.request_id)
                self.delivered += 1
                if self.delivered % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a backlog of sinks that never suspend must not hold the loop
            if self._closing:
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def drain(self, timeout_s: float) -> None:
        """Deliver what is queued (at most timeout_s), then stop the task."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        try:
            await asyncio.wait_for(task, timeout_s)
        except TimeoutError:  # wait_for has cancelled the task
            log.error("sink_drain_timeout", sink=self.name, left=len(self._queue))
            self.dropped += len(self._queue)
            self._queue.clear()


class SinkQueue:
    """Where the request path hands over records: accounting sinks take all, best-effort lanes may drop."""

    def __init__(self, sinks: Sequence[Sink], maxsize: int = 10_000, accounting: Sequence[AccountingSink] = ()) -> None:
        self.lanes = [Lane(sink, maxsize) for sink in sinks]
        self.accounting = list(accounting)

    def start(self) -> None:
        for lane in self.lanes:
            lane.start()

    def emit(self, record: RequestRecord) -> None:
        """Called on the request path: never blocks, never raises."""
        for sink in self.accounting:
            try:
                sink.accept(record)
            except Exception:  # cannot happen by design (an append); never fail the request for it
                log.exception("accounting_accept_failed", sink=sink.name, request_id=record.request_id)
        for lane in self.lanes:
            lane.offer(record)

    @property
    def depth(self) -> int:
        """Records waiting in the best-effort lanes (accounting buffers report their own)."""
        return sum(lane.depth for lane in self.lanes)

    @property
    def dropped(self) -> int:
        """Records dropped by the best-effort lanes, all sinks together."""
        return sum(lane.dropped for lane in self.lanes)

    def dropped_by_sink(self) -> dict[str, int]:
        return {lane.name: lane.dropped for lane in self.lanes}

    def depth_by_sink(self) -> dict[str, int]:
        return {lane.name: lane.depth for lane in self.lanes}

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Drain every lane, flush every accounting sink (to its store or its spool), close all."""
        await asyncio.gather(*(lane.drain(timeout_s) for lane in self.lanes))
        for sink in [lane.sink for lane in self.lanes] + self.accounting:
            try:
                await sink.aclose()
            except Exception:
                log.exception("sink_close_failed", sink=sink.name)
