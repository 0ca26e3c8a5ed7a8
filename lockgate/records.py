"""One immutable record per request (and per upstream attempt), handed to sinks off the hot path.

The request path only builds a record and puts it on a bounded queue
(``put_nowait``: no await, no I/O). One background task hands each record to
every sink. A full queue drops the record for best-effort sinks and counts the
drop; accounting sinks that must never lose data keep their own durable spool.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

log = structlog.get_logger("lockgate.records")


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
    """Receives every record, in order, from the sink task (never from the request path)."""

    name: str

    async def handle(self, record: RequestRecord) -> None: ...

    async def aclose(self) -> None: ...


class SinkQueue:
    """A bounded queue and the one task that drains it into the sinks."""

    def __init__(self, sinks: list[Sink], maxsize: int = 10_000) -> None:
        self.sinks = sinks
        self._queue: asyncio.Queue[RequestRecord | None] = asyncio.Queue(maxsize=maxsize)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.delivered = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lockgate-sinks")

    def emit(self, record: RequestRecord) -> None:
        """Called on the request path: never blocks, never raises."""
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            record = await self._queue.get()
            if record is None:
                return
            for sink in self.sinks:
                try:
                    await sink.handle(record)
                except Exception:  # a sink's bug must not stop the others
                    log.exception("sink_failed", sink=sink.name, request_id=record.request_id)
            self.delivered += 1

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Drain what is queued, then close every sink."""
        if self._task is not None:
            await self._queue.put(None)
            try:
                await asyncio.wait_for(self._task, timeout_s)
            except asyncio.TimeoutError:
                log.error("sink_drain_timeout", left=self._queue.qsize())
                self._task.cancel()
            self._task = None
        for sink in self.sinks:
            try:
                await sink.aclose()
            except Exception:
                log.exception("sink_close_failed", sink=sink.name)
