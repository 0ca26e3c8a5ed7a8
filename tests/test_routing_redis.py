"""Cool-downs shared by replicas through the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from lockgate.config import RedisConfig, parse_config
from lockgate.errors import ProviderRateLimited
from lockgate.redis_client import SharedRedis
from lockgate.router import Router, Upstream, build_upstreams
from lockgate.routing.redis_cooldowns import RedisCooldowns
from tests.conftest import openai_deployment
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, require_service

pytestmark = pytest.mark.redis
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    yield f"lockgate-test-{os.getpid()}-{time.time_ns()}:"


class OwnClient(RedisCooldowns):
    """A store on a Redis client of its own, closed with it (in a gateway the client is the gateway's)."""

    async def aclose(self) -> None:
        await super().aclose()
        await self._shared.aclose()


def cooldowns(url: str, prefix: str, timeout_s: float = 0.25, interval_s: float = 0.5) -> RedisCooldowns:
    shared = SharedRedis(RedisConfig(url=url, timeout_s=timeout_s, connect_timeout_s=timeout_s))
    return OwnClient(shared, prefix, interval_s)


class NoProvider:
    """The op under test is scripted; the router only needs something to close."""

    async def aclose(self) -> None:
        return None


def replica(prefix: str) -> Router:
    cfg = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "deployments": [{"provider": "mock", "model": "a", "id": "a"}, {"provider": "mock", "model": "b", "id": "b"}],
                }
            ],
            "router": {"backoff": {"base_s": 0.001, "max_s": 0.01}},
        },
        env={},
    )
    store = cooldowns(REDIS_URL, prefix + "cd:", interval_s=0.05)
    return Router(cfg, build_upstreams(cfg, lambda d: NoProvider()), cooldowns=store)  # type: ignore[arg-type,return-value]


class Script:
    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.fail = dict(fail or {})
        self.calls: list[str] = []

    async def __call__(self, up: Upstream) -> str:
        self.calls.append(up.id)
        err = self.fail.pop(up.id, None)
        if err is not None:
            raise err
        return up.id


async def test_a_cool_down_on_one_replica_is_seen_by_another(prefix: str) -> None:
    one, two = replica(prefix), replica(prefix)
    await one.start()
    await two.start()
    try:
        op = Script({"a": ProviderRateLimited("slow", retry_after_s=0.6)})
        assert await one.call(one.routes["m"], op, []) == "b"
        assert op.calls == ["a", "b"]
        await asyncio.sleep(0.25)  # a few sync rounds
        state = {d["id"]: d for d in two.describe()[0]["deployments"]}  # type: ignore[union-attr]
        assert state["a"]["state"] == "cooling"
        op2 = Script()
        assert await two.call(two.routes["m"], op2, []) == "b"
        assert op2.calls == ["b"]  # the other replica skips `a` without having seen it fail
        await asyncio.sleep(0.5)  # the shared cool-down expires in Redis
        op3 = Script()
        assert await two.call(two.routes["m"], op3, []) == "a"
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_replica_starting_later_learns_current_cool_downs(prefix: str) -> None:
    one = replica(prefix)
    await one.start()
    try:
        await one.call(one.routes["m"], Script({"a": ProviderRateLimited("slow", retry_after_s=5)}), [])
        await asyncio.sleep(0.15)
        late = replica(prefix)
        await late.start()
        try:
            op = Script()
            await late.call(late.routes["m"], op, [])
            assert op.calls == ["b"]
        finally:
            await late.aclose()
    finally:
        await one.aclose()


async def test_redis_down_keeps_routing_on_local_health() -> None:
    cfg = parse_config({"models": [{"name": "m", "deployments": [{"provider": "mock", "model": "a", "id": "a"}]}]}, env={})
    store = cooldowns("redis://127.0.0.1:1/0", "x:", timeout_s=0.1, interval_s=0.05)
    router = Router(cfg, build_upstreams(cfg, lambda d: NoProvider()), cooldowns=store)  # type: ignore[arg-type,return-value]
    started = time.monotonic()
    await router.start()
    try:
        assert await router.call(router.routes["m"], Script(), []) == "a"
        assert time.monotonic() - started < 1.0
    finally:
        await router.aclose()


def test_two_gateways_share_cool_downs(prefix: str, start_gateway: Callable[..., GatewayProcess]) -> None:
    a, b = FakeOpenAI().start(), FakeOpenAI().start()
    try:
        config: dict[str, Any] = {
            "auth": {"master_key": MASTER_KEY},
            "router": {"cooldown": {"backend": "redis"}},  # the limiter stays in process: cool-downs say their own
            "redis": {"url": REDIS_URL, "key_prefix": prefix},
            "models": [{"name": "smart", "deployments": [openai_deployment(a, id="a"), openai_deployment(b, id="b")]}],
        }
        gw1, gw2 = start_gateway(config), start_gateway(config)
        a.faults.append({"status": 429, "headers": {"retry-after": "30"}})
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        body = {"model": "smart", "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(timeout=20) as http:
            r1 = http.post(f"{gw1.url}/chat/completions", headers=headers, json=body)
            assert r1.status_code == 200 and r1.headers["x-lockgate-deployment"] == "b"
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                ready = http.get(f"{gw2.base_url}/health/ready").json()
                if ready["models"][0]["deployments"][0]["state"] == "cooling":
                    break
                time.sleep(0.05)
            assert ready["models"][0]["deployments"][0]["state"] == "cooling"
            r2 = http.post(f"{gw2.url}/chat/completions", headers=headers, json=body)
            assert r2.headers["x-lockgate-deployment"] == "b" and r2.headers["x-lockgate-attempts"] == "1"
        assert len(a.requests) == 1  # gateway 2 never sent to the cooled deployment
    finally:
        a.stop()
        b.stop()


async def test_clearing_a_shared_cool_down_ends_it_on_every_replica(prefix: str) -> None:
    """A deployment that answered again is cleared in Redis: another replica's mirror drops it at its next sync,
    long before the 30 s cool-down would have run out."""
    async with asyncio.timeout(20):  # a broken clear must fail the test, not hang it
        clock = time.monotonic
        one = cooldowns(REDIS_URL, prefix + "cd:", timeout_s=2.0, interval_s=3600)  # synced by hand below
        two = cooldowns(REDIS_URL, prefix + "cd:", timeout_s=2.0, interval_s=3600)
        await one.start(["a", "b"], clock)
        await two.start(["a", "b"], clock)
        try:
            one.publish("a", clock() + 30, 30)
            await one.sync()
            await two.sync()
            assert (two.until("a") or 0) > clock() + 20 and two.until("b") is None
            one.clear("a")
            assert one.until("a") is None
            await one.sync()
            await two.sync()
            assert two.until("a") is None
            from redis.asyncio import Redis

            plain = Redis.from_url(REDIS_URL)
            try:
                assert await plain.exists(prefix + "cd:a") == 0
            finally:
                await plain.aclose()
        finally:
            await one.aclose()
            await two.aclose()
