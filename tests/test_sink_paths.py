"""The two ways out of the request path, in process: best-effort lanes that drop (counted), and
the usage writer that never drops (memory, then spool) whatever the database does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lockgate.records import RequestRecord, SinkQueue
from lockgate.usage.sink import UsageSink
from tests.test_usage_units import FlakyDB


def _record(rid: str) -> RequestRecord:
    return RequestRecord(
        request_id=rid,
        endpoint="chat",
        public_model="m",
        status=200,
        started_at=1_790_000_000.0,
        latency_ms=1.0,
        key_id="k",
        prompt_tokens=3,
        completion_tokens=2,
        cost_usd=0.0,
    )


class Collecting:
    """A best-effort sink; with ``gate`` set it waits on it for every record (a stalled analytics service)."""

    def __init__(self, name: str, gate: asyncio.Event | None = None) -> None:
        self.name = name
        self.gate = gate
        self.got: list[str] = []
        self.closed = False

    async def handle(self, record: RequestRecord) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.got.append(record.request_id)

    async def aclose(self) -> None:
        self.closed = True


class Ledger:
    """An accounting sink that only remembers what it was handed."""

    name = "ledger"

    def __init__(self) -> None:
        self.accepted: list[str] = []

    def accept(self, record: RequestRecord) -> None:
        self.accepted.append(record.request_id)

    async def aclose(self) -> None:
        return None


async def _emit_like_requests(queue: SinkQueue, n: int) -> None:
    """One record per request, the loop running between them as it does under traffic."""
    for i in range(n):
        queue.emit(_record(f"r{i}"))
        await asyncio.sleep(0)


async def test_a_stalled_sink_drops_its_own_records_and_starves_no_other() -> None:
    gate = asyncio.Event()
    slow, fast = Collecting("posthog", gate), Collecting("access_log")
    queue = SinkQueue([slow, fast], maxsize=10)
    queue.start()
    await _emit_like_requests(queue, 100)
    await asyncio.sleep(0.01)
    assert fast.got == [f"r{i}" for i in range(100)]
    # The stalled lane holds one record in its sink and 10 in its queue; the other 89 are counted.
    assert queue.dropped_by_sink() == {"posthog": 89, "access_log": 0}
    assert queue.dropped == 89 and queue.depth_by_sink() == {"posthog": 10, "access_log": 0}
    gate.set()
    await queue.aclose()
    assert slow.got == [f"r{i}" for i in range(11)] and slow.closed and fast.closed


async def test_accounting_sinks_take_every_record_even_when_every_lane_is_full() -> None:
    ledger, log = Ledger(), Collecting("access_log")
    queue = SinkQueue([log], maxsize=5, accounting=[ledger])
    queue.start()
    for i in range(100):  # a burst with no chance for the lane to run
        queue.emit(_record(f"r{i}"))
    assert len(ledger.accepted) == 100
    assert queue.dropped_by_sink() == {"access_log": 95}
    await queue.aclose()
    assert log.got == [f"r{i}" for i in range(5)]


async def test_a_lane_that_cannot_drain_at_shutdown_counts_what_it_leaves() -> None:
    stuck = Collecting("posthog", asyncio.Event())  # never released
    queue = SinkQueue([stuck], maxsize=10)
    queue.start()
    await _emit_like_requests(queue, 5)
    await queue.aclose(timeout_s=0.1)
    assert queue.dropped == 4 and stuck.closed  # the one in handle() is cancelled with the task


# --- the usage writer ----------------------------------------------------------------------


async def test_records_overflowing_memory_are_spooled_while_a_write_hangs(tmp_path: Path) -> None:
    db, unlocked = FlakyDB(), asyncio.Event()

    async def locked_write(rows: list[dict]) -> int:  # the database holds the writer until unlocked
        await unlocked.wait()
        return await db.write(rows)

    sink = await UsageSink(locked_write, tmp_path, batch_size=5, flush_interval_s=0.01, write_timeout_s=30, max_buffer=20).start()
    await asyncio.sleep(0)
    for i in range(200):
        sink.accept(_record(f"r{i}"))
        await asyncio.sleep(0)
    for _ in range(100):
        if sink.spooled >= 170:
            break
        await asyncio.sleep(0.01)
    # Writer stuck with its first batch; memory back under the bound; everything else on disk.
    assert sink.write_failures == 0 and len(sink._buffer) < 20
    assert sink.spooled + len(sink._buffer) + 5 == 200
    unlocked.set()
    await sink.aclose()  # the stuck write finishes; the buffer is written and the spool replayed
    assert sorted(db.rows) == sorted(f"r{i}" for i in range(200))
    assert not list(tmp_path.glob("usage-*.spool"))  # replayed at close, then removed


async def test_when_the_disk_fails_too_records_stay_in_memory(tmp_path: Path) -> None:
    db = FlakyDB()
    db.down = True
    sink = await UsageSink(db.write, tmp_path, batch_size=5, flush_interval_s=0.01, max_buffer=10).start()
    broken = True
    real_append_many = sink.spool.append_many

    def append_many(batches: list[list[dict]]) -> None:
        if broken:
            raise OSError(28, "No space left on device")
        real_append_many(batches)

    sink.spool.append_many = append_many  # type: ignore[method-assign]
    for i in range(30):
        sink.accept(_record(f"r{i}"))
        await asyncio.sleep(0)
    # A failed write hands its batch back to the buffer: all 30 are held again once no attempt is in flight.
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(sink._buffer) == 30 and sink.spool_failures > 0:
            break
    assert len(sink._buffer) == 30 and sink.spooled == 0 and sink.spool_failures > 0
    broken, db.down = False, False
    await sink.aclose()
    assert sorted(db.rows) == sorted(f"r{i}" for i in range(30))
