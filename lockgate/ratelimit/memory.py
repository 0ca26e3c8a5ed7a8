"""The in-process limiter: the embedded default, exact within one process.

Each window is a dict of bucket index -> amount in ascending order (dicts keep
insertion order and charges only go to the newest bucket), a running total,
and nothing else: a check is a few dict operations, with no lock because no
await happens between the check and the charge. A parallel window is a plain
count of the requests in flight (no lease: this process sees every end).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from lockgate.background import Ticker
from lockgate.ratelimit.base import PARALLEL_RETRY_MS, Decision, Window

Clock = Callable[[], float]  # milliseconds


def wall_ms() -> float:
    return time.time() * 1000.0


class Counter:
    """One sliding window: buckets of ``bucket_ms``, live while index >= now_bucket - n_buckets."""

    __slots__ = ("buckets", "total", "last", "n", "size")

    def __init__(self, window_ms: int, bucket_ms: int) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.last = 0  # newest bucket ever charged: time never runs backwards for a counter
        self.n = window_ms // bucket_ms
        self.size = bucket_ms

    def slide(self, now_ms: int) -> int:
        """Drop what has left the window; return the current bucket index."""
        now_b = max(now_ms // self.size, self.last)
        cutoff = now_b - self.n
        buckets = self.buckets
        while buckets:
            first = next(iter(buckets))
            if first >= cutoff:
                break
            self.total -= buckets.pop(first)
        return now_b

    def expiry_ms(self, bucket: int, now_ms: int) -> int:
        return (bucket + self.n + 1) * self.size - now_ms

    def reset_ms(self, now_ms: int) -> int:
        return self.expiry_ms(next(iter(self.buckets)), now_ms) if self.buckets else 0

    def retry_ms(self, amount: int, limit: int, now_ms: int) -> int:
        """How long until ``amount`` more fits under ``limit``."""
        if amount > limit:
            return self.n * self.size  # never fits; tell the caller one whole window
        over = self.total + amount - limit
        for bucket, value in self.buckets.items():
            over -= value
            if over <= 0:
                return max(1, self.expiry_ms(bucket, now_ms))
        return 1

    def charge(self, bucket: int, amount: int) -> None:
        self.buckets[bucket] = self.buckets.get(bucket, 0) + amount
        self.total += amount
        self.last = max(self.last, bucket)

    def correct(self, bucket: int, delta: int, now_b: int) -> None:
        """Reconcile a charge made in ``bucket``: there if it is still live, else (if more) now."""
        if bucket not in self.buckets:
            if delta <= 0:
                return  # the estimate already left the window (or was never counted)
            bucket = now_b
        value = self.buckets.get(bucket, 0) + delta
        if value <= 0:
            delta -= value
            self.buckets.pop(bucket, None)
        else:
            self.buckets[bucket] = value
        self.total = max(0, self.total + delta)
        self.last = max(self.last, bucket)


class MemoryLimiter:
    def __init__(self, clock: Clock | None = None, sweep_every_s: float = 60.0) -> None:
        self._clock = clock or wall_ms
        self._counters: dict[str, Counter] = {}
        self._in_flight: dict[str, int] = {}  # parallel windows: requests holding a slot
        self._sweeper = Ticker(self.sweep, sweep_every_s, "lockgate-ratelimit-sweep")

    def _counter(self, w: Window) -> Counter:
        c = self._counters.get(w.key)
        if c is None:
            c = self._counters[w.key] = Counter(w.window_ms, w.bucket_ms)
        return c

    async def start(self) -> None:
        self._sweeper.start()

    async def acquire(self, windows: Sequence[Window], amounts: Sequence[int], lease: str = "") -> Decision:
        return self.acquire_now(windows, amounts)

    def acquire_now(self, windows: Sequence[Window], amounts: Sequence[int]) -> Decision:
        now = int(self._clock())
        counters = [None if w.kind == "parallel" else self._counter(w) for w in windows]
        current = [c.slide(now) if c is not None else 0 for c in counters]
        flying = self._in_flight
        used = [c.total if c is not None else flying.get(w.key, 0) for w, c in zip(windows, counters)]
        for i, (w, c, amount) in enumerate(zip(windows, counters, amounts)):
            if used[i] + amount > w.limit:
                return Decision(
                    False,
                    now,
                    used,
                    [c.reset_ms(now) if c is not None else 0 for c in counters],
                    refused=i,
                    retry_after_ms=c.retry_ms(amount, w.limit, now) if c is not None else PARALLEL_RETRY_MS,
                )
        for w, c, bucket, amount in zip(windows, counters, current, amounts):
            if c is not None:
                c.charge(bucket, amount)
            else:
                flying[w.key] = flying.get(w.key, 0) + amount
        used = [c.total if c is not None else flying[w.key] for w, c in zip(windows, counters)]
        return Decision(True, now, used, [c.reset_ms(now) if c is not None else 0 for c in counters])

    def adjust(self, windows: Sequence[Window], charged_ms: int, deltas: Sequence[int], lease: str = "") -> None:
        now = int(self._clock())
        for w, delta in zip(windows, deltas):
            if not delta:
                continue
            if w.kind == "parallel":
                left = self._in_flight.get(w.key, 0) + delta
                if left > 0:
                    self._in_flight[w.key] = left
                else:
                    self._in_flight.pop(w.key, None)
                continue
            c = self._counter(w)
            now_b = c.slide(now)
            c.correct(charged_ms // c.size, delta, now_b)

    def sweep(self) -> int:
        """Forget windows with nothing left in them (idle keys must not grow memory forever)."""
        now = int(self._clock())
        idle = [k for k, c in self._counters.items() if (c.slide(now), not c.buckets)[1]]
        for key in idle:
            del self._counters[key]
        return len(idle)

    async def aclose(self) -> None:
        await self._sweeper.stop()
