"""The budget counters' reservation contract, in process and on the real Redis (a unique key prefix)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lockgate.config import RedisConfig
from lockgate.redis_client import SharedRedis
from lockgate.usage.budgets import NANO, Hold, MemoryCounters, Refusal
from lockgate.usage.redis_budgets import RedisCounters
from tests.harness import require_service

SPEND, HOLD = "key:k:total:all", "hold:key:k"


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryCounters()
        return
    require_service("Redis", "127.0.0.1", 6379)
    shared = SharedRedis(RedisConfig(timeout_s=2.0, connect_timeout_s=2.0))
    prefix = f"lgtest:{uuid.uuid4().hex[:12]}:budget:"
    c = RedisCounters(shared, prefix=prefix, hold_ttl_s=0.5)
    c.start()
    yield c
    await c.aclose()
    keys = [k async for k in shared.client.scan_iter(match=f"{prefix}*")]
    if keys:
        await shared.client.delete(*keys)
    await shared.aclose()


async def _sent(c: Any) -> None:
    if isinstance(c, RedisCounters):  # settlements leave off the request path
        for _ in range(100):
            if c._queue.empty():
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)


async def test_holds_count_as_spend_until_settled(counters: Any) -> None:
    limit = NANO  # $1
    assert await counters.reserve([SPEND], [HOLD], [limit], "a", 2 * NANO) is None  # nothing spent or held yet
    refused = await counters.reserve([SPEND], [HOLD], [limit], "b", 1)
    assert refused == Refusal(0, 0, 2 * NANO)
    counters.settle(Hold([HOLD], "a", 2 * NANO), [(SPEND, "total", NANO // 10)])  # it cost $0.10
    await _sent(counters)
    assert await counters.get([SPEND]) == [NANO // 10]
    assert await counters.reserve([SPEND], [HOLD], [limit], "c", NANO // 2) is None
    # strict: the request's own estimate must fit as well ($0.10 spent + $0.50 held + $0.50 > $1).
    assert await counters.reserve([SPEND], [HOLD], [limit], "d", NANO // 2, True) == Refusal(0, NANO // 10, NANO // 2)
    assert await counters.reserve([SPEND], [HOLD], [limit], "e", NANO // 4, True) is None


async def test_all_or_nothing_across_scopes(counters: Any) -> None:
    keys, holds = [SPEND, "team:t:total:all"], [HOLD, "hold:team:t"]
    assert await counters.reserve(keys, holds, [10 * NANO, NANO], "a", NANO // 2) is None
    assert await counters.reserve(keys, holds, [10 * NANO, NANO], "b", NANO // 2) is None
    refused = await counters.reserve(keys, holds, [10 * NANO, NANO], "c", NANO // 2)
    assert refused == Refusal(1, 0, NANO)  # the team's budget said no; the key's held nothing more
    assert await counters.reserve([SPEND], [HOLD], [NANO], "d", 0) == Refusal(0, 0, NANO)


async def test_a_hold_left_behind_expires_in_redis() -> None:
    require_service("Redis", "127.0.0.1", 6379)
    shared = SharedRedis(RedisConfig(timeout_s=2.0, connect_timeout_s=2.0))
    prefix = f"lgtest:{uuid.uuid4().hex[:12]}:budget:"
    c = RedisCounters(shared, prefix=prefix, hold_ttl_s=0.3)
    try:
        assert await c.reserve([SPEND], [HOLD], [NANO], "dead", 5 * NANO) is None  # its gateway never settles
        assert await c.reserve([SPEND], [HOLD], [NANO], "b", 1) is not None
        await asyncio.sleep(0.4)
        assert await c.reserve([SPEND], [HOLD], [NANO], "c", 1) is None
        assert int(await shared.client.hget(prefix + HOLD, "t")) == 1  # the dead hold was taken back
    finally:
        keys = [k async for k in shared.client.scan_iter(match=f"{prefix}*")]
        if keys:
            await shared.client.delete(*keys)
        await shared.aclose()
