"""Every outcome leaves one stored record, priced; reports match the records; budgets refuse at the boundary.

Against real `lockgate serve` processes, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import basic_config, openai_deployment
from tests.dbs import db_url  # noqa: F401
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess
from tests.usage_helpers import fetch, records, usage_config, wait_for_records

PRICED = {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": 4.0, "cached_input_cost_per_mtok": 0.25}


def _config(fake: FakeOpenAI, url: str) -> dict[str, Any]:
    cfg = basic_config(fake)
    cfg["models"] = [
        {"name": "gpt-test", "deployments": [openai_deployment(fake, first_byte_timeout_s=3, **PRICED)]},
        {
            "name": "gpt-failover",
            "deployments": [openai_deployment(fake, id="first", **PRICED), openai_deployment(fake, id="second", **PRICED)],
        },
        {"name": "unpriced", "deployments": [openai_deployment(fake)]},
        {"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt"}], "limits": {"rpm": 1}},
    ]
    cfg["router"] = {"backoff": {"base_s": 0, "max_s": 0}}
    return usage_config(cfg, url)


def _client(gw: GatewayProcess, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0, timeout=20)


MSG = [{"role": "user", "content": "hello"}]


def test_every_outcome_is_recorded_once(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
) -> None:
    gw = start_gateway(_config(fake_openai, db_url))
    client = _client(gw)
    fake_openai.reply.cached_tokens = 4
    fake_openai.reply.reasoning_tokens = 3

    ok = client.chat.completions.with_raw_response.create(model="gpt-test", messages=MSG)
    stream = client.chat.completions.create(model="gpt-test", messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    fake_openai.faults.append({"status": 400, "message": "bad thing"})
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-test", messages=MSG)
    fake_openai.faults.append({"status": 500})
    failover = client.chat.completions.with_raw_response.create(model="gpt-failover", messages=MSG)
    assert failover.headers["x-lockgate-attempts"] == "2"
    client.chat.completions.create(model="mock-gpt", messages=MSG)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="mock-gpt", messages=MSG)
    with pytest.raises(openai.AuthenticationError):
        _client(gw, "sk-wrong").chat.completions.create(model="gpt-test", messages=MSG)
    unpriced = client.chat.completions.with_raw_response.create(model="unpriced", messages=MSG)

    # A client that goes away mid-stream. The upstream never sends the rest (it holds the stream
    # until the gateway closes it), so the only way this request ends is the client's leaving.
    fake_openai.faults.append({"stall_after": 1})
    with httpx.Client(timeout=10) as h:
        with h.stream(
            "POST", f"{gw.url}/chat/completions", headers={"authorization": f"Bearer {MASTER_KEY}"},
            json={"model": "gpt-test", "messages": MSG, "stream": True},
        ) as resp:  # fmt: skip
            # Leave once content has been relayed, so the record has tokens to count.
            for line in resp.iter_lines():
                if '"Hello ' in line:
                    break
            cancel_id = resp.headers["x-request-id"]

    # Nine requests, one of them failed over (one more record, for its failed attempt).
    rows = wait_for_records(db_url, 10)
    assert len(rows) == 10, sorted((r["status"], r["model"]) for r in rows)
    by_id = {r["request_id"]: r for r in rows}
    assert len(by_id) == 10

    success = by_id[ok.headers["x-request-id"]]
    assert success["status"] == 200 and success["prompt_tokens"] == 9 and success["completion_tokens"] == 7
    assert success["cached_tokens"] == 4 and success["reasoning_tokens"] == 3 and success["key_id"] == "master"
    # 5 fresh input x $1 + 4 cached x $0.25 + 7 output x $4, per million.
    assert success["cost_usd"] == pytest.approx(34e-6, abs=1e-12) and not success["cost_unknown"]

    streamed = [r for r in rows if r["streamed"] and r["status"] == 200]
    assert len(streamed) == 1 and streamed[0]["completion_tokens"] == 7 and not streamed[0]["partial"]

    statuses = sorted(r["status"] for r in rows if r["parent_request_id"] is None)
    assert statuses == [200, 200, 200, 200, 200, 400, 401, 429, 499]

    upstream_error = next(r for r in rows if r["status"] == 400)
    assert upstream_error["error_type"] == "provider_error" and upstream_error["cost_usd"] == 0

    parent = by_id[failover.headers["x-request-id"]]
    attempt = next(r for r in rows if r["parent_request_id"] == parent["request_id"])
    assert parent["status"] == 200 and parent["attempts"] == 2 and parent["deployment"] == "second"
    assert attempt["status"] == 502 and attempt["deployment"] == "first" and attempt["attempt"] == 1

    limited = next(r for r in rows if r["status"] == 429)
    assert limited["error_type"] == "policy_rate_limited" and limited["model"] == "mock-gpt"
    auth = next(r for r in rows if r["status"] == 401)
    assert auth["key_id"] is None and auth["error_type"] == "caller_authentication"

    flagged = by_id[unpriced.headers["x-request-id"]]
    assert flagged["cost_usd"] is None and flagged["cost_unknown"]

    cancelled = by_id[cancel_id]
    assert cancelled["status"] == 499 and cancelled["partial"] and cancelled["completion_tokens"] > 0

    # The reports are the records, summed.
    report = httpx.get(
        f"{gw.base_url}/admin/usage", params={"group_by": "model"}, headers={"authorization": f"Bearer {MASTER_KEY}"}
    )
    assert report.status_code == 200
    data = {row["model"]: row for row in report.json()["data"]}
    own = [r for r in rows if r["parent_request_id"] is None]
    for model, row in data.items():
        mine = [r for r in own if r["model"] == model]
        assert row["requests"] == len(mine), model
        assert row["prompt_tokens"] == sum(r["prompt_tokens"] for r in mine)
        assert row["completion_tokens"] == sum(r["completion_tokens"] for r in mine)
        assert row["cached_tokens"] == sum(r["cached_tokens"] for r in mine)
        assert row["errors"] == sum(1 for r in mine if r["status"] >= 400)
        assert row["cost_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in mine), abs=1e-12)
        lat = sorted(r["latency_ms"] for r in mine)
        assert row["latency_ms_p50"] == pytest.approx(lat[(len(lat) - 1) // 2], rel=0.06, abs=1.0)
    assert data["unpriced"]["cost_unknown_requests"] == 1
    assert sum(r["requests"] for r in data.values()) == 9


def test_reports_by_every_group_and_access(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
) -> None:
    gw = start_gateway(_config(fake_openai, db_url))
    client = _client(gw)
    for _ in range(3):
        client.chat.completions.create(model="gpt-test", messages=MSG)
    wait_for_records(db_url, 3)
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    for group, field in (("key", "key_id"), ("team", "team"), ("day", "day"), ("model", "model")):
        body = httpx.get(f"{gw.base_url}/admin/usage", params={"group_by": group}, headers=admin).json()
        assert sum(r["requests"] for r in body["data"]) == 3 and field in body["data"][0], group
    own = httpx.get(f"{gw.base_url}/v1/usage", headers=admin).json()
    assert own["data"][0]["requests"] == 3 and own["data"][0]["cost_usd"] == pytest.approx(3 * 34e-6 * 0 + 3 * 37e-6, abs=1e-12)
    bad = httpx.get(f"{gw.base_url}/admin/usage", params={"group_by": "colour"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "group_by"
    bad = httpx.get(f"{gw.base_url}/admin/usage", params={"start": "yesterday"}, headers=admin)
    assert bad.status_code == 400
    assert httpx.get(f"{gw.base_url}/admin/usage").status_code == 401
    # Raw records are never read by the reports: the roll-ups alone answer them.
    assert fetch(db_url, "SELECT SUM(requests) AS n FROM usage_daily")[0]["n"] == 3


def test_each_key_sees_only_its_own_usage(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
) -> None:
    gw = start_gateway(_config(fake_openai, db_url))
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    keys = {}
    for name in ("alice", "bob"):
        created = httpx.post(f"{gw.base_url}/admin/keys", headers=admin, json={"name": name})
        assert created.status_code == 201, created.text
        keys[name] = created.json()["key"]
    # Two keys' traffic in one gateway, told apart by model, tokens and latency.
    for _ in range(2):
        _client(gw, keys["alice"]).chat.completions.create(model="gpt-test", messages=MSG)
    fake_openai.reply.prompt_tokens = 20
    for _ in range(3):
        fake_openai.faults.append({"hang_s": 0.4})
        _client(gw, keys["bob"]).chat.completions.create(model="unpriced", messages=MSG)
    _client(gw).chat.completions.create(model="gpt-test", messages=MSG)
    assert len(wait_for_records(db_url, 6)) == 6

    def own(key: str, group_by: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{gw.base_url}/v1/usage", params={"group_by": group_by}, headers={"authorization": f"Bearer {key}"})
        assert resp.status_code == 200, resp.text
        return resp.json()["data"]

    alice = own(keys["alice"], "model")
    assert [(r["model"], r["requests"], r["prompt_tokens"]) for r in alice] == [("gpt-test", 2, 18)]
    assert alice[0]["latency_ms_p50"] < 350  # bob's calls (each held 400 ms upstream) are not in alice's percentiles
    bob = own(keys["bob"], "day")
    assert len(bob) == 1 and bob[0]["requests"] == 3 and bob[0]["prompt_tokens"] == 60
    assert bob[0]["latency_ms_p50"] >= 350
    assert [r["requests"] for r in own(MASTER_KEY, "day")] == [1]
    # A virtual key asking for others' figures, or for a grouping only admins have.
    for group_by in ("key", "model"):
        refused = httpx.get(
            f"{gw.base_url}/admin/usage", params={"group_by": group_by}, headers={"authorization": f"Bearer {keys['alice']}"}
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["message"].startswith("Usage reports for all keys need")
    wrong = httpx.get(f"{gw.base_url}/v1/usage", params={"group_by": "key"}, headers={"authorization": f"Bearer {keys['alice']}"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "group_by"
    everyone = httpx.get(f"{gw.base_url}/admin/usage", params={"group_by": "key"}, headers=admin).json()["data"]
    assert sorted(r["requests"] for r in everyone) == [1, 2, 3]


def test_budget_is_enforced_at_the_boundary_and_rebuilt_at_start(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
) -> None:
    cfg = _config(fake_openai, db_url)
    gw = start_gateway(cfg)
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    # Each call costs 9 x $1 + 7 x $4 = $37 per million tokens; the budget is exactly three calls.
    created = httpx.post(
        f"{gw.base_url}/admin/keys", headers=admin, json={"name": "capped", "max_budget_usd": 111e-6, "budget_period": "daily"}
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    capped = _client(gw, key)
    for _ in range(3):
        capped.chat.completions.create(model="gpt-test", messages=MSG)
    with pytest.raises(openai.RateLimitError) as err:
        capped.chat.completions.create(model="gpt-test", messages=MSG)
    assert err.value.code == "insufficient_quota" and "budget" in err.value.message
    own = httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"})
    wait_for_records(db_url, 4)
    own = httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()["data"]
    assert own[0]["requests"] == 4 and own[0]["errors"] == 1

    # A restart rebuilds the spend from the database: still refused.
    gw.stop()
    gw2 = start_gateway(cfg)
    with pytest.raises(openai.RateLimitError):
        _client(gw2, key).chat.completions.create(model="gpt-test", messages=MSG)


def test_sigterm_flushes_what_is_buffered(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
) -> None:
    cfg = usage_config(_config(fake_openai, db_url), db_url, flush_interval_s=3600, batch_size=1000)
    gw = start_gateway(cfg)
    client = _client(gw)
    for _ in range(5):
        client.chat.completions.create(model="gpt-test", messages=MSG)
    assert records(db_url) == []  # still buffered: neither the count nor the interval was reached
    gw.stop()  # SIGTERM: uvicorn drains, then the lifespan closes the sinks
    assert '"event":"stopped"' in gw.logs()
    assert len(records(db_url)) == 5
