"""Budgets and max_parallel_requests under concurrency, from the outside: real `lockgate serve`
processes over HTTP, the fake upstream priced so that one call costs about $2.70, in process and
on the real Redis (a unique key prefix per test), and two gateways sharing one Redis."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import basic_config, openai_deployment
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, require_service
from tests.usage_helpers import _fetch, records, usage_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
# The fake answers 9 prompt + 7 completion tokens; at $385,714.2857 per Mtok out, 7 tokens are $2.70.
OUT_PER_MTOK = 2.70 / 7 * 1_000_000
CALL_USD = 2.70 + 9e-6  # (input at $1 per Mtok)


def _config(fake: FakeOpenAI, tmp_path: Path, backend: str, out_per_mtok: float = OUT_PER_MTOK, **budgets: Any) -> dict[str, Any]:
    if backend == "redis":
        require_service("Redis", "127.0.0.1", 6379)
    # deny: a Redis too slow for its deadline on this shared machine answers 503, never admits unreserved
    redis = {"key_prefix": f"lgtest:{uuid.uuid4().hex[:12]}:", "timeout_s": 2.0, "connect_timeout_s": 2.0, "on_error": "deny"}
    cfg = basic_config(fake, redis=redis)
    priced = {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": out_per_mtok}
    cfg["models"][0]["deployments"] = [openai_deployment(fake, first_byte_timeout_s=10, timeout_s=20, **priced)]
    cfg["budgets"] = {"backend": backend, **budgets}
    cfg["ratelimit"] = {"backend": backend}
    cfg["auth"]["key_cache_ttl_s"] = 60.0
    return usage_config(cfg, f"sqlite:///{tmp_path}/shared.db")


def _key(gw: GatewayProcess, **fields: Any) -> str:
    resp = httpx.post(f"{gw.base_url}/admin/keys", json={"name": "c", **fields}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def _chat(gw: GatewayProcess, key: str, timeout: float = 30, **extra: Any) -> httpx.Response:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 7, **extra}
    return httpx.post(f"{gw.url}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=timeout)


def _spent(db: str, key_id: str) -> float:
    return sum(r["cost_usd"] or 0.0 for r in records(db) if r["key_id"] == key_id)


def _key_id(gw: GatewayProcess, token: str) -> str:
    listing = httpx.get(f"{gw.base_url}/admin/keys", headers=ADMIN, timeout=10).json()["data"]
    return str(next(k["id"] for k in listing if token.startswith(k["key_prefix"])))


def _burst(gateways: list[GatewayProcess], key: str, n: int) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: _chat(gateways[i % len(gateways)], key), range(n)))


@pytest.mark.parametrize(("backend", "strict"), [("memory", False), ("redis", False), ("memory", True)])
def test_thirty_concurrent_calls_on_a_five_tenths_of_a_cent_budget(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Path, backend: str, strict: bool
) -> None:
    """The issue's scenario: before reservations 9 of 30 were admitted and $24.30 spent."""
    fake_openai.faults.extend({"hang_s": 1.0} for _ in range(30))  # every admitted call is in flight a second
    gw = start_gateway(_config(fake_openai, tmp_path, backend, strict=strict))
    key = _key(gw, max_budget_usd=0.005)
    answers = _burst([gw], key, 30)
    admitted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert len(admitted) + len(refused) == 30, [r.text for r in answers if r.status_code not in (200, 429)]
    # Lenient: the first is admitted (nothing spent or held yet); strict: its own estimate does not fit.
    assert len(admitted) == (0 if strict else 1)
    errors = [r.json()["error"] for r in refused]
    assert {(e["code"], e["type"]) for e in errors} == {("insufficient_quota", "insufficient_quota")}
    # Refused while the admitted one held its estimate (or, strict, because the estimate does not fit).
    assert any("held by requests in flight" in e["message"] or "would pass" in e["message"] for e in errors)
    assert all("of $0.0050" in e["message"] for e in errors)
    time.sleep(0.5)  # usage records flush every 0.1 s
    spent = _spent(f"sqlite:///{tmp_path}/shared.db", _key_id(gw, key))
    print(f"{backend} strict={strict}: {len(admitted)} of 30 admitted, ${spent:.4f} spent")
    assert spent <= CALL_USD + 1e-9


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_a_hold_is_given_back_however_the_request_ends(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Path, backend: str
) -> None:
    """Budget $1; every call reserves ~$2 (max_tokens 2000 at $1000 per Mtok) but costs $0.007: while one is in
    flight the next is refused, and after it ends (answer, stream end, upstream failure, client cancel) the
    next is admitted: a hold that leaked would refuse every later call."""
    gw = start_gateway(_config(fake_openai, tmp_path, backend, out_per_mtok=1000.0))
    key = _key(gw, max_budget_usd=1.0)
    headers = {"authorization": f"Bearer {key}"}
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2000, "stream": True}

    def admitted_next() -> None:
        deadline = time.monotonic() + 3
        while (resp := _chat(gw, key, max_tokens=2000)).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.05)  # Redis: the settlement is sent off the request path
        assert resp.status_code == 200, resp.text

    fake_openai.hold_after_first = hold = threading.Event()
    try:
        # A stream held in flight holds its estimate: another call is refused meanwhile.
        with httpx.Client(timeout=10) as http:
            with http.stream("POST", f"{gw.url}/chat/completions", json=body, headers=headers) as resp:
                assert resp.status_code == 200
                refused = _chat(gw, key, max_tokens=2000)
                assert refused.status_code == 429 and "held by requests in flight" in refused.json()["error"]["message"]
                hold.set()
                lines = list(resp.iter_lines())
                assert "data: [DONE]" in lines
        admitted_next()  # after a stream's end
        # A client that leaves mid-stream.
        hold.clear()
        with httpx.Client(timeout=10) as http:
            with http.stream("POST", f"{gw.url}/chat/completions", json=body, headers=headers) as resp:
                assert resp.status_code == 200
                next(resp.iter_lines())
        time.sleep(0.2)
        hold.set()
        admitted_next()
    finally:
        hold.set()
        fake_openai.hold_after_first = None
    # An upstream failure.
    fake_openai.faults.append({"status": 500})
    assert _chat(gw, key, max_tokens=2000).status_code == 502
    admitted_next()
    # A client that gives up before a slow answer (the gateway finishes it, and gives the hold back).
    fake_openai.faults.append({"hang_s": 1.0})
    with pytest.raises(httpx.ReadTimeout):
        _chat(gw, key, timeout=0.3, max_tokens=2000)
    time.sleep(1.2)
    admitted_next()


def _held_streams(
    gateways: list[GatewayProcess], key: str, n: int, path: str = "/v1/chat/completions"
) -> tuple[list[int], list[dict[str, Any]], threading.Event]:
    """n streams at once through the gateways in turn; admitted ones stay in flight until the event is set."""
    done = threading.Event()
    statuses: list[int] = []
    refusals: list[dict[str, Any]] = []
    opened = threading.Barrier(n + 1)
    headers = {"authorization": f"Bearer {key}", "x-api-key": key, "anthropic-version": "2023-06-01"}
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 7, "stream": True}

    def one(i: int) -> None:
        gw = gateways[i % len(gateways)]
        with httpx.Client(timeout=20) as http:
            with http.stream("POST", gw.base_url + path, json=body, headers=headers) as resp:
                statuses.append(resp.status_code)
                if resp.status_code != 200:
                    resp.read()
                    refusals.append(resp.json())
                opened.wait()
                if resp.status_code == 200:
                    done.wait(20)
                    resp.read()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    opened.wait(20)
    done.threads = threads  # type: ignore[attr-defined]
    return statuses, refusals, done


def _release(fake: FakeOpenAI, hold: threading.Event, done: threading.Event) -> None:
    hold.set()
    done.set()
    for t in done.threads:  # type: ignore[attr-defined]
        t.join(20)


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_max_parallel_two_of_five_held_streams(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Path, backend: str
) -> None:
    gw = start_gateway(_config(fake_openai, tmp_path, backend))
    key = _key(gw, max_parallel_requests=2)
    fake_openai.hold_after_first = hold = threading.Event()
    try:
        statuses, refusals, done = _held_streams([gw], key, 5)
        assert sorted(statuses) == [200, 200, 429, 429, 429]
        err = refusals[0]["error"]
        assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests"
        assert "Too many parallel requests for key" in err["message"] and "Limit 2, In flight 2" in err["message"]
        _release(fake_openai, hold, done)
        # Released at each stream's end: two more at once are admitted again.
        hold.clear()
        statuses, _, done = _held_streams([gw], key, 2)
        assert statuses == [200, 200]
        _release(fake_openai, hold, done)
        # One after another never meets the limit (the release is in place before the next request).
        assert [_chat(gw, key).status_code for _ in range(6)] == [200] * 6
    finally:
        hold.set()
        fake_openai.hold_after_first = None
    metrics = httpx.get(f"{gw.base_url}/metrics", timeout=10).text
    counted = [line for line in metrics.splitlines() if "policy_parallel_limited" in line or "rate_limited_total" in line]
    assert any('status="429"' in line and line.endswith(" 3.0") for line in counted), counted
    assert 'lockgate_rate_limited_total{model="gpt-test"} 3.0' in metrics


def test_team_max_parallel_and_the_messages_dialect(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """A team's limit is shared by its keys; /v1/messages refuses in Anthropic's shape."""
    gw = start_gateway(_config(fake_openai, tmp_path, "memory"))
    team = httpx.post(f"{gw.base_url}/admin/teams", json={"id": "crew", "max_parallel_requests": 1}, headers=ADMIN, timeout=10)
    assert team.status_code == 201 and team.json()["max_parallel_requests"] == 1, team.text
    a, b = _key(gw, team="crew"), _key(gw, team="crew")
    fake_openai.hold_after_first = hold = threading.Event()
    try:
        statuses, _, done = _held_streams([gw], a, 1)
        assert statuses == [200]
        refused = httpx.post(
            f"{gw.base_url}/v1/messages",
            json={"model": "gpt-test", "max_tokens": 7, "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": b, "anthropic-version": "2023-06-01"},
            timeout=10,
        )
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert "Too many parallel requests for team `crew`" in body["error"]["message"]
        _release(fake_openai, hold, done)
    finally:
        hold.set()
        fake_openai.hold_after_first = None
    assert _chat(gw, b).status_code == 200


def test_two_gateways_on_one_redis_share_a_budget_and_a_parallel_limit(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    cfg = _config(fake_openai, tmp_path, "redis")
    one, two = start_gateway(cfg), start_gateway(cfg)
    budgeted = _key(one, max_budget_usd=0.005)
    fake_openai.faults.extend({"hang_s": 1.0} for _ in range(30))
    answers = _burst([one, two], budgeted, 30)
    fake_openai.faults.clear()
    assert sorted(r.status_code for r in answers) == [200] + [429] * 29
    parallel = _key(one, max_parallel_requests=2)
    fake_openai.hold_after_first = hold = threading.Event()
    try:
        statuses, _, done = _held_streams([one, two], parallel, 5)
        assert sorted(statuses) == [200, 200, 429, 429, 429]
        _release(fake_openai, hold, done)
        hold.clear()
        statuses, _, done = _held_streams([two, one], parallel, 2)
        assert statuses == [200, 200]
        _release(fake_openai, hold, done)
    finally:
        hold.set()
        fake_openai.hold_after_first = None


def test_a_gateway_killed_mid_request_leaves_nothing_held_past_its_ttl(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """SIGKILL while a stream holds a budget reservation and a parallel slot: the other gateway refuses
    while they are held, and admits again once their leases (2 s here) have passed."""
    cfg = _config(fake_openai, tmp_path, "redis", out_per_mtok=1000.0, reservation_ttl_s=2.0)
    cfg["ratelimit"]["parallel_lease_s"] = 2.0
    doomed, survivor = start_gateway(cfg), start_gateway(cfg)
    budgeted = _key(doomed, max_budget_usd=1.0)  # a call reserves ~$2 (max_tokens 2000), costs $0.007
    parallel = _key(doomed, max_parallel_requests=1)
    fake_openai.hold_after_first = hold = threading.Event()
    streams: list[tuple[httpx.Client, httpx.Response]] = []
    try:
        for key, extra in ((budgeted, {"max_tokens": 2000}), (parallel, {})):
            body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 7}
            http = httpx.Client(timeout=10)
            resp = http.send(
                http.build_request(
                    "POST", f"{doomed.url}/chat/completions", json={**body, **extra}, headers={"authorization": f"Bearer {key}"}
                ),
                stream=True,
            )
            assert resp.status_code == 200
            streams.append((http, resp))
        doomed.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        held = _chat(survivor, budgeted, max_tokens=2000)  # its hold outlived its gateway
        assert held.status_code == 429 and "held by requests in flight" in held.json()["error"]["message"]
        slot = _chat(survivor, parallel)  # so did its slot
        assert slot.status_code == 429 and "Too many parallel requests" in slot.json()["error"]["message"]
        time.sleep(max(0.0, 2.3 - (time.monotonic() - killed_at)))
        assert _chat(survivor, budgeted, max_tokens=2000).status_code == 200
        assert _chat(survivor, parallel).status_code == 200
    finally:
        hold.set()
        fake_openai.hold_after_first = None
        for http, resp in streams:
            resp.close()
            http.close()


async def test_a_cancelled_request_is_recorded_and_gives_back_what_admission_took(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """A server that cancels the request's task (a client gone before the answer, under a server that
    cancels, or shutdown): the pipeline records it (499) and releases its slot and its budget hold."""
    from lockgate.app import create_app
    from lockgate.config import parse_config

    cfg = _config(fake_openai, tmp_path, "memory", out_per_mtok=1000.0)
    cfg["ratelimit"]["defaults"] = {"max_parallel_requests": 1}
    cfg["auth"]["master_key"] = MASTER_KEY
    app = create_app(parse_config(cfg), configure_logs=False)
    gateway = app.state.gateway
    await gateway.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
            made = await client.post("/admin/keys", json={"name": "x", "max_budget_usd": 1.0}, headers=ADMIN)
            key = made.json()["key"]
            body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2000}
            headers = {"authorization": f"Bearer {key}"}
            fake_openai.faults.append({"hang_s": 5.0})
            with pytest.raises(TimeoutError):  # ASGITransport runs the app in this task: the timeout cancels it
                async with asyncio.timeout(0.5):
                    await client.post("/v1/chat/completions", json=body, headers=headers)
            limiter = gateway.ratelimit.limiter
            assert limiter._in_flight == {}  # the parallel slot is back
            assert gateway.usage.budgets.counters.held == {}  # and the budget hold
            answer = await client.post("/v1/chat/completions", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
    finally:
        await gateway.stop()
    rows = await _fetch(f"sqlite:///{tmp_path}/shared.db", "SELECT status FROM usage_records")
    assert sorted(r["status"] for r in rows) == [200, 499]
