"""The router's pure logic: strategies, backoff, health and the failover loop, on a fake clock."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from lockgate.config import Backoff, Cooldown, parse_config
from lockgate.errors import (
    GatewayError,
    InvalidRequest,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)
from lockgate.router import Attempt, Router, Upstream, build_upstreams
from lockgate.routing.backoff import backoff_delay
from lockgate.routing.health import COOLING, HALF_OPEN, HEALTHY, Health


class FakeClock:
    """Monotonic time that only moves when the router sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def dep(name: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "mock", "model": name, "id": name, **extra}


def make_router(models: list[dict[str, Any]], clock: FakeClock | None = None, seed: int = 7, **router: Any) -> Router:
    cfg = parse_config(
        {
            "models": models,
            "router": {
                "max_attempts": 4,
                "backoff": {"base_s": 0.25, "max_s": 8, "jitter": "full"},
                "deadline_s": 120,
                "cooldown": {"failures": 3, "window_s": 60, "cooldown_s": 30},
                **router,
            },
        },
        env={},
    )
    clock = clock or FakeClock()
    return Router(cfg, build_upstreams(cfg, lambda d: object()), clock=clock, sleep=clock.sleep, rng=random.Random(seed))  # type: ignore[arg-type,return-value]


class Script:
    """An op that answers per deployment id from a script of errors/values; records the call order."""

    def __init__(self, script: dict[str, list[Any]], clock: FakeClock | None = None, cost_s: float = 0.0) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: list[str] = []
        self.clock, self.cost_s = clock, cost_s

    async def __call__(self, up: Upstream) -> str:
        self.calls.append(up.id)
        if self.clock is not None:
            self.clock.now += self.cost_s
        queue = self.script.get(up.id, [])
        outcome = queue.pop(0) if queue else "ok"
        if isinstance(outcome, GatewayError):
            raise outcome
        return f"{outcome}:{up.id}"


def err500() -> GatewayError:
    return ProviderServerError("boom")


# --- backoff ------------------------------------------------------------------------------


def test_backoff_full_jitter_stays_under_the_exponential_ceiling() -> None:
    cfg, rng = Backoff(base_s=0.25, max_s=8, jitter="full"), random.Random(1)
    for retry, ceiling in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (7, 8.0), (12, 8.0)]:
        samples = [backoff_delay(retry, cfg, rng) for _ in range(400)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8 and min(samples) < ceiling * 0.2  # really jittered


def test_backoff_without_jitter_and_retry_after() -> None:
    cfg, rng = Backoff(base_s=0.5, max_s=3, jitter="none"), random.Random(1)
    assert [backoff_delay(n, cfg, rng) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delay(1, cfg, rng, retry_after_s=1.7) == 1.7  # the upstream's wish wins
    assert backoff_delay(1, cfg, rng, retry_after_s=60) == 3.0  # capped by max_s


# --- health -------------------------------------------------------------------------------


def test_health_trips_after_failures_within_the_window_only() -> None:
    cfg, h = Cooldown(failures=3, window_s=60, cooldown_s=30), Health()
    assert h.failed(err500(), 0, cfg) is None
    assert h.failed(err500(), 61, cfg) is None  # the first one left the window
    assert h.failed(err500(), 62, cfg) is None
    assert h.state(62) == HEALTHY
    assert h.failed(err500(), 63, cfg) == 30
    assert h.state(63) == COOLING and not h.available(92.9)
    assert h.state(93) == HALF_OPEN and h.available(93)


def test_health_429_cools_at_once_for_retry_after() -> None:
    cfg, h = Cooldown(failures=3, window_s=60, cooldown_s=30), Health()
    assert h.failed(ProviderRateLimited("slow", retry_after_s=5), 0, cfg) == 5
    assert h.state(4.9) == COOLING and h.state(5) == HALF_OPEN
    h2 = Health()
    assert h2.failed(ProviderRateLimited("slow"), 0, cfg) == 30  # no Retry-After: cooldown_s


def test_half_open_admits_one_probe_then_recovers_or_cools_again() -> None:
    cfg, h = Cooldown(failures=1, window_s=60, cooldown_s=10), Health()
    h.failed(err500(), 0, cfg)
    h.started(10)
    assert h.probing and not h.available(10)  # others skip it while the probe is out
    h.released()
    h.succeeded(12.0)
    assert h.state(10) == HEALTHY and h.available(10)
    h.failed(err500(), 20, cfg)
    h.started(30)
    h.released()
    assert h.failed(err500(), 31, cfg) == 10  # a failed probe cools it down again
    assert h.state(31) == COOLING


# --- strategies -----------------------------------------------------------------------------


def test_priority_orders_by_priority_then_config_order() -> None:
    r = make_router([{"name": "m", "deployments": [dep("a", priority=2), dep("b", priority=0), dep("c", priority=0)]}])
    assert [u.id for u in r.order(r.routes["m"])] == ["b", "c", "a"]


def test_cost_orders_cheapest_first_and_unknown_last() -> None:
    deployments = [
        {"provider": "openai", "model": "acme-secret-llm", "id": "unknown"},
        {"provider": "openai", "model": "acme-secret-llm", "id": "pricey", "input_cost_per_mtok": 5, "output_cost_per_mtok": 15},
        {"provider": "openai", "model": "gpt-4o", "id": "builtin"},  # priced from the built-in table
        {"provider": "openai", "model": "gpt-4o", "id": "discounted", "input_cost_per_mtok": 0.1, "output_cost_per_mtok": 0.2},
    ]
    r = make_router([{"name": "m", "strategy": "cost", "deployments": deployments}])
    assert [u.id for u in r.order(r.routes["m"])] == ["discounted", "builtin", "pricey", "unknown"]


def test_weighted_picks_first_in_proportion_to_weight() -> None:
    r = make_router(
        [{"name": "m", "strategy": "weighted", "deployments": [dep("a", weight=3), dep("b", weight=1), dep("z", weight=0)]}]
    )
    firsts = Counter(r.order(r.routes["m"])[0].id for _ in range(4000))
    assert firsts["z"] == 0
    assert 0.70 < firsts["a"] / 4000 < 0.80


def test_least_busy_prefers_fewest_in_flight() -> None:
    r = make_router([{"name": "m", "strategy": "least-busy", "deployments": [dep("a"), dep("b"), dep("c")]}])
    a, b, c = r.routes["m"].upstreams
    a.health.inflight, b.health.inflight, c.health.inflight = 5, 1, 3
    assert [u.id for u in r.order(r.routes["m"])] == ["b", "c", "a"]


def test_latency_prefers_fastest_but_explores() -> None:
    r = make_router([{"name": "m", "strategy": "latency", "deployments": [dep("slow"), dep("fast"), dep("new")]}])
    slow, fast, new = r.routes["m"].upstreams
    slow.health.latency_ms, fast.health.latency_ms, new.health.latency_ms = 900.0, 100.0, 400.0
    firsts = Counter(r.order(r.routes["m"])[0].id for _ in range(2000))
    assert firsts["fast"] > 1700  # the fastest, mostly
    assert firsts["slow"] > 20  # but the slow one is measured again now and then


def test_latency_tries_a_never_measured_deployment_first() -> None:
    r = make_router([{"name": "m", "strategy": "latency", "deployments": [dep("slow"), dep("fast"), dep("new")]}])
    slow, fast, new = r.routes["m"].upstreams
    # None measured yet: config order (outside the exploring share).
    assert Counter(tuple(u.id for u in r.order(r.routes["m"])) for _ in range(1000))[("slow", "fast", "new")] > 850
    slow.health.latency_ms, fast.health.latency_ms = 900.0, 100.0  # `new` has no measurement
    orders = Counter(tuple(u.id for u in r.order(r.routes["m"])) for _ in range(2000))
    assert orders[("new", "fast", "slow")] > 1700  # unmeasured first, then the fastest


@pytest.mark.asyncio
async def test_latency_strategy_learns_from_observed_latency() -> None:
    clock = FakeClock()
    r = make_router([{"name": "m", "strategy": "latency", "deployments": [dep("a"), dep("b")]}], clock, seed=3)
    for up, ms in zip(r.routes["m"].upstreams, (500.0, 50.0)):
        up.health.succeeded(ms)
    firsts = Counter()
    for _ in range(200):
        op = Script({})
        await r.call(r.routes["m"], op, [])
        firsts[op.calls[0]] += 1
    assert firsts["b"] > 170


# --- the failover loop ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_moves_to_next_deployment_without_waiting_then_backs_off_on_repeat() -> None:
    clock = FakeClock()
    r = make_router([{"name": "m", "deployments": [dep("a"), dep("b")]}], clock)
    op = Script({"a": [err500()], "b": [ProviderTimeout("slow")]}, clock)
    attempts: list[Attempt] = []
    assert await r.call(r.routes["m"], op, attempts) == "ok:a"
    assert op.calls == ["a", "b", "a"]
    assert [a.number for a in attempts] == [1, 2, 3]
    assert [type(a.error).__name__ if a.error else None for a in attempts] == ["ProviderServerError", "ProviderTimeout", None]
    # No wait to switch to the fresh deployment b; a jittered backoff before trying a again.
    assert attempts[1].waited_s == 0
    assert 0 < attempts[2].waited_s <= 0.5 and clock.sleeps == [attempts[2].waited_s]


@pytest.mark.asyncio
async def test_single_deployment_retries_in_place_with_exponential_backoff() -> None:
    clock = FakeClock()
    r = make_router(
        [{"name": "m", "deployments": [dep("a")]}],
        clock,
        backoff={"base_s": 1, "max_s": 3, "jitter": "none"},
        cooldown={"failures": 10},
    )
    op = Script({"a": [err500(), ProviderUnavailable("refused"), err500()]})
    assert await r.call(r.routes["m"], op, []) == "ok:a"
    assert clock.sleeps == [1, 2, 3]  # 1, 2, 4 capped at max_s


@pytest.mark.asyncio
async def test_retry_after_is_honoured_and_capped() -> None:
    clock = FakeClock()
    r = make_router([{"name": "m", "deployments": [dep("a")]}], clock, backoff={"base_s": 0.1, "max_s": 2})
    op = Script({"a": [ProviderOverloaded("busy", retry_after_s=1.5), ProviderOverloaded("busy", retry_after_s=30)]})
    assert await r.call(r.routes["m"], op, []) == "ok:a"
    assert clock.sleeps == [1.5, 2]


@pytest.mark.asyncio
async def test_non_retryable_error_returns_at_once() -> None:
    clock = FakeClock()
    r = make_router(
        [{"name": "m", "fallbacks": ["f"], "deployments": [dep("a"), dep("b")]}, {"name": "f", "deployments": [dep("c")]}], clock
    )
    op = Script({"a": [InvalidRequest("bad")]})
    attempts: list[Attempt] = []
    with pytest.raises(InvalidRequest):
        await r.call(r.routes["m"], op, attempts)
    assert op.calls == ["a"] and len(attempts) == 1
    assert r.routes["m"].upstreams[0].health.errors == 0  # the caller's fault, not the deployment's


@pytest.mark.asyncio
async def test_max_attempts_then_last_error() -> None:
    r = make_router([{"name": "m", "deployments": [dep("a"), dep("b")]}], max_attempts=3, cooldown={"failures": 10})
    op = Script({"a": [err500()] * 5, "b": [ProviderServerError("b is down")] * 5})
    with pytest.raises(ProviderServerError, match="boom"):
        await r.call(r.routes["m"], op, [])
    assert op.calls == ["a", "b", "a"]


@pytest.mark.asyncio
async def test_fallbacks_after_the_group_is_exhausted() -> None:
    clock = FakeClock()
    models = [
        {"name": "smart", "fallbacks": ["backup"], "deployments": [dep("a"), dep("b")]},
        {"name": "backup", "deployments": [dep("c")]},
    ]
    r = make_router(models, clock, max_attempts=2, cooldown={"failures": 10})
    op = Script({"a": [err500()], "b": [err500()]})
    attempts: list[Attempt] = []
    assert await r.call(r.routes["smart"], op, attempts) == "ok:c"
    assert op.calls == ["a", "b", "c"]
    assert [a.upstream.id for a in attempts] == ["a", "b", "c"]


@pytest.mark.asyncio
async def test_deadline_stops_new_attempts() -> None:
    clock = FakeClock()
    r = make_router(
        [{"name": "m", "deployments": [dep("a"), dep("b"), dep("c")]}],
        clock,
        deadline_s=10,
        max_attempts=10,
        cooldown={"failures": 10},
    )
    op = Script({k: [err500()] * 10 for k in "abc"}, clock, cost_s=4.0)  # each try takes 4 s
    attempts: list[Attempt] = []
    with pytest.raises(ProviderServerError):
        await r.call(r.routes["m"], op, attempts)
    assert op.calls == ["a", "b", "c"]  # the 4th would start at t=12 > deadline 10


@pytest.mark.asyncio
async def test_backoff_that_would_pass_the_deadline_is_not_slept() -> None:
    clock = FakeClock()
    r = make_router([{"name": "m", "deployments": [dep("a")]}], clock, deadline_s=5, cooldown={"failures": 10})
    op = Script({"a": [ProviderOverloaded("busy", retry_after_s=6)]})
    with pytest.raises(ProviderOverloaded):
        await r.call(r.routes["m"], op, [])
    assert clock.sleeps == [] and op.calls == ["a"]


@pytest.mark.asyncio
async def test_cooldown_skips_a_deployment_then_half_open_probe_recovers_it() -> None:
    clock = FakeClock()
    r = make_router(
        [{"name": "m", "deployments": [dep("a"), dep("b")]}], clock, cooldown={"failures": 2, "window_s": 60, "cooldown_s": 30}
    )
    a = r.routes["m"].upstreams[0]
    op = Script({"a": [err500(), err500(), err500()]})
    for _ in range(2):
        await r.call(r.routes["m"], op, [])
    assert op.calls == ["a", "b", "a", "b"]
    assert a.health.state(clock.now) == COOLING
    op.calls.clear()
    await r.call(r.routes["m"], op, [])
    assert op.calls == ["b"]  # skipped while cooling
    clock.now += 30
    assert a.health.state(clock.now) == HALF_OPEN
    op.calls.clear()
    await r.call(r.routes["m"], op, [])
    assert op.calls == ["a", "b"]  # the probe fails: cooled again
    assert a.health.state(clock.now) == COOLING
    clock.now += 30
    op.calls.clear()
    await r.call(r.routes["m"], op, [])
    assert op.calls == ["a"] and a.health.state(clock.now) == HEALTHY  # the probe succeeds


@pytest.mark.asyncio
async def test_429_cools_down_for_retry_after() -> None:
    clock = FakeClock()
    r = make_router([{"name": "m", "deployments": [dep("a"), dep("b")]}], clock)
    op = Script({"a": [ProviderRateLimited("slow", retry_after_s=5)]})
    await r.call(r.routes["m"], op, [])
    assert op.calls == ["a", "b"]
    desc = r.describe()[0]["deployments"]
    assert desc[0]["state"] == "cooling" and desc[0]["cooldown_remaining_s"] == 5  # type: ignore[index]
    clock.now += 5
    op.calls.clear()
    await r.call(r.routes["m"], op, [])
    assert op.calls == ["a"]


@pytest.mark.asyncio
async def test_all_cooling_goes_to_fallbacks_else_tries_the_soonest_to_recover() -> None:
    clock = FakeClock()
    models = [{"name": "m", "fallbacks": ["f"], "deployments": [dep("a"), dep("b")]}, {"name": "f", "deployments": [dep("c")]}]
    r = make_router(models, clock)
    a, b = r.routes["m"].upstreams
    a.health.cool(clock.now, 20)
    b.health.cool(clock.now, 10)
    op = Script({})
    assert await r.call(r.routes["m"], op, []) == "ok:c"  # a healthy fallback first
    r.routes["f"].upstreams[0].health.cool(clock.now, 5)
    op = Script({"b": [err500()]})
    assert await r.call(r.routes["m"], op, []) == "ok:a"
    assert op.calls == ["b", "a"]  # nothing healthy: tried anyway, soonest recovery first


@pytest.mark.asyncio
async def test_every_other_request_failing_deployment_is_absorbed() -> None:
    clock = FakeClock()
    r = make_router([{"name": "m", "deployments": [dep("flaky"), dep("steady")]}], clock, cooldown={"failures": 3, "window_s": 1})
    flaky_script = [err500() if i % 2 == 0 else "ok" for i in range(40)]
    op = Script({"flaky": flaky_script})
    served = Counter()
    for _ in range(20):
        clock.now += 2  # failures never pile up within the 1 s window
        served[(await r.call(r.routes["m"], op, [])).split(":")[1]] += 1
    assert served == {"flaky": 10, "steady": 10}  # every request answered
    assert op.calls.count("flaky") == 20  # priority keeps trying it first; it never cools down


@pytest.mark.asyncio
async def test_hold_keeps_the_winner_busy_until_released() -> None:
    r = make_router([{"name": "m", "strategy": "least-busy", "deployments": [dep("a"), dep("b")]}])
    await r.call(r.routes["m"], Script({}), [], hold=True)
    a, b = r.routes["m"].upstreams
    assert (a.health.inflight, b.health.inflight) == (1, 0)
    op = Script({})
    await r.call(r.routes["m"], op, [])
    assert op.calls == ["b"]
    r.release(a)
    assert a.health.inflight == 0
