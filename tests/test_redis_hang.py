"""A Redis that hangs (accepts connections, never answers) must not hold a request past the deadline.

Through real `lockgate serve` processes: the limiter, the budgets and the shared
cool-downs all point at tests/fakes/hanging_redis.py, and every request must
end within the `redis:` section's deadline (connect + answer) plus a generous
margin, with `redis.on_error` applied: allow serves unmetered, deny answers
503. Readiness says Redis is failing. A dead Redis is tested elsewhere
(test_ratelimit_e2e.py, test_telemetry_health.py); a hung one is the case that
socket-level settings alone (or redis-py's default retries) turn into a stall.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import basic_config
from tests.fakes.hanging_redis import HangingRedis
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess

TIMEOUT_S = 0.8  # long against the margin: one retry more would already pass the bound
CONNECT_TIMEOUT_S = 0.2
DEADLINE_S = TIMEOUT_S + CONNECT_TIMEOUT_S  # the most one Redis call may take, connection included
MARGIN_S = 1.0  # generous for a request's own work (milliseconds): this is not a performance test, only "no stall"
BOUND_S = DEADLINE_S + MARGIN_S
BREAKER_S = 0.5  # after a failure the request path skips Redis this long (lockgate/redis_client.py)
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture(params=["silent", "handshake"])
def hanging_redis(request: pytest.FixtureRequest) -> Iterator[HangingRedis]:
    """Silent: not even the connection handshake is answered. Handshake: connects, then every command hangs."""
    server = HangingRedis(handshake=request.param == "handshake").start()
    yield server
    server.stop()


def hang_config(fake: FakeOpenAI, redis: HangingRedis, policy: str, features: tuple[str, ...], tmp_path: Any) -> dict[str, Any]:
    cfg = basic_config(
        fake,
        redis={"url": redis.url, "timeout_s": TIMEOUT_S, "connect_timeout_s": CONNECT_TIMEOUT_S, "on_error": policy},
        database={"url": f"sqlite:///{tmp_path}/hang.db"},
    )
    if "ratelimit" in features:
        cfg["ratelimit"] = {"backend": "redis"}
        cfg["models"][0]["limits"] = {"rpm": 10_000}  # gpt-test is limited: the limiter asks Redis
    if "budgets" in features:
        cfg["budgets"] = {"backend": "redis"}
    if "cooldowns" in features:
        cfg["router"] = {**cfg["router"], "cooldown": {"backend": "redis"}}
    return cfg


def budgeted_key(gw: GatewayProcess) -> str:
    """A virtual key with a budget, so every request of it reads the budget counters."""
    resp = httpx.post(f"{gw.base_url}/admin/keys", json={"name": "hang", "max_budget_usd": 100.0}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def timed_chat(gw: GatewayProcess, key: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    resp = httpx.post(
        f"{gw.url}/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,  # far above the bound: a stall shows as a slow answer, not a client error
    )
    return time.monotonic() - started, resp


def check_policy(resp: httpx.Response, policy: str, refused_code: str) -> None:
    if policy == "allow":
        assert resp.status_code == 200, resp.text
        assert "x-ratelimit-remaining-requests" not in resp.headers  # admitted unmetered
    else:
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == refused_code


def drive(gw: GatewayProcess, key: str, policy: str, refused_code: str) -> list[float]:
    """Requests one by one (spaced past the breaker, so each pays Redis' deadline), then a burst at once."""
    took = []
    for _ in range(3):
        elapsed, resp = timed_chat(gw, key)
        check_policy(resp, policy, refused_code)
        took.append(elapsed)
        time.sleep(BREAKER_S + 0.2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for elapsed, resp in pool.map(lambda _: timed_chat(gw, key), range(8)):
            check_policy(resp, policy, refused_code)
            took.append(elapsed)
    assert max(took) < BOUND_S, f"a request took {max(took):.2f}s; Redis' deadline is {DEADLINE_S}s: {took}"
    return took


def check_ready(gw: GatewayProcess, required: bool, used_by: list[str]) -> None:
    started = time.monotonic()
    resp = httpx.get(f"{gw.base_url}/health/ready", timeout=30)
    assert time.monotonic() - started < BOUND_S  # the probe is bounded too
    body = resp.json()
    assert body["checks"]["redis"]["status"] == "down"
    assert body["checks"]["redis"]["required"] is required
    assert body["checks"]["redis"]["used_by"] == used_by
    if required:
        assert resp.status_code == 503 and body["status"] == "not_ready" and "redis" in body["failing"]
    else:
        assert resp.status_code == 200 and body["status"] == "degraded" and "redis" in body["degraded"]


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_limiter_budgets_and_cool_downs_on_a_hanging_redis(
    policy: str, hanging_redis: HangingRedis, fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Any
) -> None:
    cfg = hang_config(fake_openai, hanging_redis, policy, ("ratelimit", "budgets", "cooldowns"), tmp_path)
    gw = start_gateway(cfg, wait_for="/health/live")  # with deny it is (rightly) never ready
    key = budgeted_key(gw)
    drive(gw, key, policy, refused_code="rate_limiter_unavailable")
    check_ready(gw, required=policy == "deny", used_by=["ratelimit", "budgets", "cooldowns"])
    # Every feature really was pointed at the hanging server, not quietly in memory.
    logs = gw.logs()
    assert "ratelimit_backend_error" in logs and "cooldown_store_unavailable" in logs
    if hanging_redis.handshake:  # connected: their own commands reached it, and hung
        assert hanging_redis.saw("EVALSHA") and hanging_redis.saw("PTTL")
    if policy == "allow":
        # The limiter failed open; the budget check then failed too (at once, by the shared breaker, or at the deadline).
        assert "budget_backend_error" in logs
        assert len(fake_openai.requests) == 11
    else:
        assert len(fake_openai.requests) == 0  # refused before any upstream call


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_budgets_alone_on_a_hanging_redis(
    policy: str, hanging_redis: HangingRedis, fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Any
) -> None:
    """No limiter ahead to open the breaker: the budget check's own call must hit the deadline, once, unretried."""
    cfg = hang_config(fake_openai, hanging_redis, policy, ("budgets",), tmp_path)
    gw = start_gateway(cfg, wait_for="/health/live")
    key = budgeted_key(gw)
    took = drive(gw, key, policy, refused_code="budget_unavailable")
    assert min(took[:3]) >= TIMEOUT_S * 0.8  # those paid the timeout: the call really waited on Redis
    assert "budget_backend_error" in gw.logs()
    if hanging_redis.handshake:
        # The budget check-and-hold (one script) was sent to the hanging server.
        assert hanging_redis.saw("EVALSHA") or hanging_redis.saw("MGET")
    check_ready(gw, required=policy == "deny", used_by=["budgets"])
    assert len(fake_openai.requests) == (11 if policy == "allow" else 0)
