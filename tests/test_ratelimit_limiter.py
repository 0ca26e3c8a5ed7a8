"""The limiters' contract, run against the in-process back-end and the real Redis, with a controllable clock."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from lockgate.config import RedisConfig
from lockgate.ratelimit.base import WINDOW_PERIODS, BackendUnavailable, Window
from lockgate.ratelimit.memory import MemoryLimiter
from lockgate.ratelimit.redis import RedisLimiter
from lockgate.redis_client import SharedRedis
from tests.harness import free_port, require_service

# 50.5 s past a minute: a fixed-window limiter would reset 9.5 s later; a sliding one must not.
T0 = 1_700_000_040_000 + 10_500


class Clock:
    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


def win(prefix: str, name: str, kind: str = "requests", limit: int = 3, period: str = "min", scope: str = "model") -> Window:
    window_ms, bucket_ms = WINDOW_PERIODS[period]
    return Window(f"{prefix}{scope}:{name}:{kind[0]}{period}", scope, name, kind, period, limit, window_ms, bucket_ms)


Factory = Callable[[Clock], object]


def redis_limiter(url: str = "redis://127.0.0.1:6379/0", timeout_s: float = 0.25, **kwargs: object) -> RedisLimiter:
    """A limiter on a client of its own, as one gateway's would be (the factory's settings)."""
    shared = SharedRedis(RedisConfig(url=url, timeout_s=timeout_s, connect_timeout_s=timeout_s))
    return RedisLimiter(shared, **kwargs)  # type: ignore[arg-type]


async def close(lim: object) -> None:
    await lim.aclose()  # type: ignore[attr-defined]
    if isinstance(lim, RedisLimiter):
        await lim._shared.aclose()  # the limiter never closes the gateway's client


@pytest.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Factory, str]]:
    """A limiter factory (sharing one store per test, as replicas would) and a unique key prefix."""
    prefix = f"lgtest:{uuid.uuid4().hex[:12]}:"
    made: list = []
    if request.param == "memory":
        shared: dict = {}
        in_flight: dict = {}

        def factory(clock: Clock) -> MemoryLimiter:
            lim = MemoryLimiter(clock=clock)
            lim._counters = shared  # one "process": replicas only share state through Redis
            lim._in_flight = in_flight
            made.append(lim)
            return lim
    else:
        require_service("Redis", "127.0.0.1", 6379)

        def factory(clock: Clock) -> RedisLimiter:
            lim = redis_limiter(clock=clock)
            made.append(lim)
            return lim

    yield factory, prefix
    for lim in made:
        if isinstance(lim, RedisLimiter):
            keys = [k async for k in lim._redis.scan_iter(match=f"{prefix}*")]
            if keys:
                await lim._redis.delete(*keys)
        await close(lim)


async def settle(lim: object) -> None:
    if isinstance(lim, RedisLimiter):
        await lim.flush()


async def test_nth_passes_next_refused_then_passes_after_the_window_slides(make) -> None:
    factory, prefix = make
    clock = Clock()
    lim = factory(clock)
    await lim.start()
    w = [win(prefix, "m", limit=3)]
    for i in range(3):
        d = await lim.acquire(w, [1])
        assert d.allowed and d.used == [i + 1]
    refused = await lim.acquire(w, [1])
    assert not refused.allowed and refused.refused == 0 and refused.used == [3]
    # The first charge's bucket began at T0 - 500 and leaves 61 buckets later.
    assert refused.retry_after_ms == 60_500
    clock.advance(15_000)  # into the next calendar minute: still inside the sliding window
    assert not (await lim.acquire(w, [1])).allowed
    clock.advance(60_500 - 15_000 - 1)
    assert not (await lim.acquire(w, [1])).allowed
    clock.advance(1)
    d = await lim.acquire(w, [1])
    assert d.allowed and d.used == [1]


async def test_window_slides_bucket_by_bucket(make) -> None:
    factory, prefix = make
    clock = Clock()
    lim = factory(clock)
    w = [win(prefix, "slide", limit=4)]
    assert (await lim.acquire(w, [1])).allowed
    assert (await lim.acquire(w, [1])).allowed
    clock.advance(30_000)
    assert (await lim.acquire(w, [1])).allowed
    assert (await lim.acquire(w, [1])).allowed
    d = await lim.acquire(w, [1])
    assert not d.allowed and d.retry_after_ms == 30_500  # when the first two leave
    clock.advance(30_500)
    assert (await lim.acquire(w, [1])).allowed
    assert (await lim.acquire(w, [1])).allowed
    assert not (await lim.acquire(w, [1])).allowed  # the two from +30 s are still in


async def test_all_or_nothing_across_scopes(make) -> None:
    factory, prefix = make
    lim = factory(Clock())
    key = win(prefix, "k1", limit=10, scope="key")
    model = win(prefix, "m1", limit=2)
    tokens = win(prefix, "m1", kind="tokens", limit=1000)
    both = [key, model, tokens]
    assert (await lim.acquire(both, [1, 1, 100])).allowed
    assert (await lim.acquire(both, [1, 1, 100])).allowed
    d = await lim.acquire(both, [1, 1, 100])
    assert not d.allowed and d.refused == 1 and d.used == [2, 2, 200]
    # Nothing was charged anywhere by the refusal.
    d = await lim.acquire([key, tokens], [0, 0])
    assert d.used == [2, 200]


async def test_tokens_refused_when_the_estimate_does_not_fit(make) -> None:
    factory, prefix = make
    lim = factory(Clock())
    w = [win(prefix, "t", kind="tokens", limit=1000)]
    assert (await lim.acquire(w, [700])).allowed
    d = await lim.acquire(w, [301])
    assert not d.allowed and d.used == [700]
    assert (await lim.acquire(w, [300])).allowed
    too_big = await lim.acquire(w, [1001])
    assert not too_big.allowed and too_big.retry_after_ms == 60_000


async def test_reconcile_estimate_to_real_usage(make) -> None:
    factory, prefix = make
    clock = Clock()
    lim = factory(clock)
    await lim.start()
    w = [win(prefix, "r", kind="tokens", limit=1000)]
    d = await lim.acquire(w, [600])
    lim.adjust(w, d.now_ms, [-580])  # used 20 of the 600 estimated
    await settle(lim)
    assert (await lim.acquire(w, [980])).allowed  # 20 + 980 = 1000 exactly
    assert not (await lim.acquire(w, [1])).allowed
    # More than estimated: the extra is charged where the estimate was.
    clock.advance(10_000)
    d2 = await lim.acquire([win(prefix, "r2", kind="tokens", limit=1000)], [100])
    lim.adjust([win(prefix, "r2", kind="tokens", limit=1000)], d2.now_ms, [400])
    await settle(lim)
    assert (await lim.acquire([win(prefix, "r2", kind="tokens", limit=1000)], [0])).used == [500]


async def test_reconcile_after_the_charge_left_the_window(make) -> None:
    factory, prefix = make
    clock = Clock()
    lim = factory(clock)
    await lim.start()
    w = [win(prefix, "late", kind="tokens", limit=1000)]
    d = await lim.acquire(w, [100])
    clock.advance(120_000)  # a two-minute stream
    lim.adjust(w, d.now_ms, [-100])  # a refund of something already gone: ignored
    await settle(lim)
    assert (await lim.acquire(w, [0])).used == [0]
    lim.adjust(w, d.now_ms, [250])  # usage beyond the estimate counts now
    await settle(lim)
    assert (await lim.acquire(w, [0])).used == [250]


async def test_reset_is_when_the_oldest_usage_leaves(make) -> None:
    factory, prefix = make
    clock = Clock()
    lim = factory(clock)
    w = [win(prefix, "reset", limit=5)]
    assert (await lim.acquire(w, [1])).reset_ms == [60_500]
    clock.advance(20_000)
    assert (await lim.acquire(w, [1])).reset_ms == [40_500]


async def test_per_day_window(make) -> None:
    factory, prefix = make
    clock = Clock()
    lim = factory(clock)
    w = [win(prefix, "day", limit=2, period="day")]
    assert (await lim.acquire(w, [1])).allowed
    clock.advance(3_600_000)
    assert (await lim.acquire(w, [1])).allowed
    d = await lim.acquire(w, [1])
    assert not d.allowed and 86_400_000 - 3_600_000 <= d.retry_after_ms <= 86_400_000 - 3_600_000 + 60_000
    clock.advance(d.retry_after_ms)
    assert (await lim.acquire(w, [1])).allowed


async def test_replicas_share_one_truth(make) -> None:
    """Two limiters (two gateway replicas) racing on one limit admit exactly the limit."""
    factory, prefix = make
    clock = Clock()
    a, b = factory(clock), factory(clock)
    w = [win(prefix, "shared", limit=20), win(prefix, "shared", kind="tokens", limit=10_000)]
    results = await asyncio.gather(*[(a if i % 2 else b).acquire(w, [1, 10]) for i in range(60)])
    assert sum(d.allowed for d in results) == 20
    assert (await a.acquire(w, [0, 0])).used == [20, 200]


async def test_memory_sweep_forgets_idle_windows() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    w = [win("p:", "idle", limit=5)]
    await lim.acquire(w, [1])
    assert lim.sweep() == 0
    clock.advance(61_000)
    assert lim.sweep() == 1 and not lim._counters


async def test_redis_uses_its_own_clock_by_default() -> None:
    require_service("Redis", "127.0.0.1", 6379)
    lim = redis_limiter()
    prefix = f"lgtest:{uuid.uuid4().hex[:12]}:"
    try:
        w = [win(prefix, "srv", limit=1)]
        d = await lim.acquire(w, [1])
        assert d.allowed and abs(d.now_ms - time.time() * 1000) < 5_000
        assert not (await lim.acquire(w, [1])).allowed
        assert 0 < await lim._redis.pttl(w[0].key) <= 62_000  # idle keys expire by themselves
    finally:
        await lim._redis.delete(w[0].key)
        await close(lim)


async def test_redis_unreachable_fails_fast_and_then_skips_for_a_moment() -> None:
    lim = redis_limiter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    w = [win("lgtest:down:", "x")]
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await lim.acquire(w, [1])
        with pytest.raises(BackendUnavailable):
            await lim.acquire(w, [1])  # the breaker: no new connection attempt
        assert time.monotonic() - started < 1.0
        assert lim.errors == 1
    finally:
        await close(lim)


async def test_redis_that_never_answers_times_out_quickly() -> None:
    """A Redis that accepts connections but hangs: bounded by the socket timeout, never a hung request."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    port = server.getsockname()[1]
    lim = redis_limiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.1)
    try:
        started = time.monotonic()
        results = await asyncio.gather(*[lim.acquire([win("lgtest:hang:", "x")], [1]) for _ in range(5)], return_exceptions=True)
        assert all(isinstance(r, BackendUnavailable) for r in results)
        assert time.monotonic() - started < 1.0
    finally:
        await close(lim)
        server.close()


async def test_redis_corrections_are_batched_and_bounded() -> None:
    require_service("Redis", "127.0.0.1", 6379)
    clock = Clock()
    lim = redis_limiter(clock=clock, queue_size=3)
    prefix = f"lgtest:{uuid.uuid4().hex[:12]}:"
    w = [win(prefix, f"b{i}", kind="tokens", limit=1000) for i in range(5)]
    try:
        d = await lim.acquire(w, [100] * 5)
        lim.adjust(w, d.now_ms, [-10] * 5)  # only 3 fit in the buffer
        assert lim.dropped == 2
        await lim.flush()
        used = (await lim.acquire(w, [0] * 5)).used
        assert used == [90, 90, 90, 100, 100]
    finally:
        await lim._redis.delete(*[x.key for x in w])
        await close(lim)


def par(prefix: str, name: str, limit: int = 2, lease_ms: int = 5_000) -> Window:
    return Window(f"{prefix}key:{name}:par", "key", name, "parallel", "now", limit, lease_ms, 0)


async def test_parallel_slots_taken_atomically_and_released(make) -> None:
    factory, prefix = make
    clock = Clock()
    a, b = factory(clock), factory(clock)  # two replicas (Redis) or one process (memory)
    for lim in (a, b):
        await lim.start()
    w = [par(prefix, "k"), win(prefix, "k", limit=100)]
    first = await a.acquire(w, [1, 1], "req_1")
    second = await b.acquire(w, [1, 1], "req_2")
    assert first.allowed and second.allowed and second.used[0] == 2
    refused = await a.acquire(w, [1, 1], "req_3")
    assert not refused.allowed and refused.refused == 0 and refused.used == [2, 2]
    assert refused.retry_after_ms == 1_000
    # Refused: nothing charged, the request window included.
    assert (await b.acquire([w[1]], [0])).used == [2]
    b.adjust(w, second.now_ms, [-1, 0], "req_2")  # req_2 ends: its slot back, its request stays counted
    # The release goes out at once and ahead of a later acquire on the same limiter: no settle() needed.
    again = await b.acquire(w, [1, 1], "req_4")
    assert again.allowed and again.used == [2, 3]


async def test_a_parallel_lease_left_behind_expires() -> None:
    """A gateway that died mid-request: its slot lapses after the lease (Redis' clock injected)."""
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"lgtest:{uuid.uuid4().hex[:12]}:"
    clock = Clock()
    lim = redis_limiter(clock=clock)
    await lim.start()
    try:
        w = [par(prefix, "k", limit=1, lease_ms=5_000)]
        assert (await lim.acquire(w, [1], "req_dead")).allowed
        assert not (await lim.acquire(w, [1], "req_2")).allowed
        clock.advance(4_999)
        assert not (await lim.acquire(w, [1], "req_3")).allowed
        clock.advance(2)
        assert (await lim.acquire(w, [1], "req_4")).allowed
    finally:
        await lim._redis.delete(f"{prefix}key:k:par")
        await close(lim)
