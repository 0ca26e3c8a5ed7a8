"""Teams end to end, on SQLite and PostgreSQL, through real `lockgate serve` processes: a team's budget
spent across its keys, its rpm shared by them, PATCH applying at once, the admin API's guard and
errors, JWT callers in a team, another replica and the CLI within the cache TTL."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import basic_config, openai_deployment
from tests.dbs import db_url  # noqa: F401
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess
from tests.usage_helpers import usage_config

# The fake upstream answers 9 prompt + 7 completion tokens: 9 x $1 + 7 x $4 = $37 per million a call.
PRICED = {"input_cost_per_mtok": 1.0, "output_cost_per_mtok": 4.0}
CALL_USD = 37e-6
JWT_SECRET = "team-tests-jwt-secret-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


def _config(fake: FakeOpenAI, url: str, ttl_s: float = 60.0, **ratelimit: Any) -> dict[str, Any]:
    cfg = basic_config(fake, ratelimit=ratelimit, redis={"key_prefix": f"lgtest:{uuid.uuid4().hex[:12]}:"})
    cfg["models"] = [
        {"name": "gpt-test", "deployments": [openai_deployment(fake, first_byte_timeout_s=3, **PRICED)]},
        {"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt"}]},
    ]
    # A long TTL: whatever changes at once below was dropped from the cache by the admin API, not by time.
    cfg["auth"].update(
        key_cache_ttl_s=ttl_s,
        max_failures_per_minute=1000,
        jwt={"hs256_secret": JWT_SECRET, "claims": {"user": "sub", "team": "org_id"}},
    )
    return usage_config(cfg, url)


def _key(gw: GatewayProcess, **fields: Any) -> str:
    resp = httpx.post(f"{gw.base_url}/admin/keys", json={"name": "t", **fields}, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


def _team(gw: GatewayProcess, **body: Any) -> dict[str, Any]:
    resp = httpx.post(f"{gw.base_url}/admin/teams", json=body, headers=ADMIN, timeout=10)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _chat(gw: GatewayProcess, key: str, model: str = "gpt-test") -> httpx.Response:
    return httpx.post(f"{gw.url}/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=10,
                      json={"model": model, "messages": [{"role": "user", "content": "hello"}]})  # fmt: skip


def _token(team: str) -> str:
    return jwt.encode({"sub": "jo", "org_id": team, "exp": int(time.time()) + 300}, JWT_SECRET, algorithm="HS256")


def test_team_budget_is_shared_by_its_keys_and_raised_by_patch(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
) -> None:
    gw = start_gateway(_config(fake_openai, db_url))
    a, b = _key(gw, team="red"), _key(gw, team="red")
    outsider = _key(gw, team="blue")
    # Both keys are used (and cached) before the team has a record: no team budget yet.
    assert _chat(gw, a).status_code == 200 and _chat(gw, b).status_code == 200

    team = _team(gw, id="red", max_budget_usd=5 * CALL_USD, budget_period="daily")
    assert team["object"] == "team" and team["budget_period"] == "daily" and team["rpm"] is None
    # Two calls are spent already; three more across both keys reach the budget exactly.
    assert [_chat(gw, k).status_code for k in (a, b, a)] == [200, 200, 200]
    for key in (b, a):
        refused = _chat(gw, key)
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
        assert "team `red`" in error["message"] and "daily budget" in error["message"]
        assert key not in error["message"]
    assert _chat(gw, outsider).status_code == 200  # another team is not touched

    # A JWT caller whose team claim names the team shares its budget too.
    assert _chat(gw, _token("red")).status_code == 429
    assert _chat(gw, _token("blue")).status_code == 200

    # Raising the budget lets requests through at once on this replica, up to the new boundary.
    patched = httpx.patch(f"{gw.base_url}/admin/teams/red", json={"max_budget_usd": 6 * CALL_USD}, headers=ADMIN)
    assert patched.status_code == 200 and patched.json()["max_budget_usd"] == pytest.approx(6 * CALL_USD)
    assert patched.json()["budget_period"] == "daily" and patched.json()["updated_at"]
    assert _chat(gw, b).status_code == 200
    assert _chat(gw, a).status_code == 429

    # Clearing the budget (or deleting the record) leaves the keys without a team budget.
    cleared = httpx.patch(f"{gw.base_url}/admin/teams/red", json={"max_budget_usd": None}, headers=ADMIN).json()
    assert cleared["max_budget_usd"] is None and cleared["budget_period"] is None
    assert _chat(gw, a).status_code == 200
    assert httpx.delete(f"{gw.base_url}/admin/teams/red", headers=ADMIN).json()["id"] == "red"
    assert httpx.get(f"{gw.base_url}/admin/teams/red", headers=ADMIN).status_code == 404
    assert _chat(gw, a).status_code == 200


def test_team_rpm_is_shared_and_beats_the_config(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
) -> None:
    gw = start_gateway(_config(fake_openai, db_url, teams={"red": {"rpm": 100}}))
    _team(gw, id="red", rpm=3)
    a, b = _key(gw, team="red", rpm=10), _key(gw, team="red")
    statuses = [_chat(gw, k, "mock-gpt") for k in (a, b, a, b)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[0].headers["x-ratelimit-limit-requests"] == "3"
    message = statuses[3].json()["error"]["message"]
    assert "for team `red` on requests per min (RPM): Limit 3, Used 3, Requested 1." in message
    # Without the record's rpm, `ratelimit.teams` applies again (the usage so far still counts).
    httpx.patch(f"{gw.base_url}/admin/teams/red", json={"rpm": None, "tpm": 50_000}, headers=ADMIN).raise_for_status()
    resp = _chat(gw, a, "mock-gpt")
    assert resp.status_code == 200 and resp.headers["x-ratelimit-limit-requests"] == "10"  # the key's own is tighter
    assert resp.headers["x-ratelimit-limit-tokens"] == "50000"


def test_admin_api_guard_errors_and_openapi(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
) -> None:
    gw = start_gateway(_config(fake_openai, db_url))
    user_key = _key(gw, team="red")
    as_user = {"authorization": f"Bearer {user_key}"}
    for method, path, body in (
        ("POST", "/admin/teams", {"id": "red", "max_budget_usd": 100}),
        ("GET", "/admin/teams", None),
        ("GET", "/admin/teams/red", None),
        ("PATCH", "/admin/teams/red", {"max_budget_usd": 100}),
        ("DELETE", "/admin/teams/red", None),
    ):
        refused = httpx.request(method, f"{gw.base_url}{path}", json=body, headers=as_user)
        assert refused.status_code == 403, (method, path)
        assert refused.json()["error"]["code"] == "admin_required"
        assert httpx.request(method, f"{gw.base_url}{path}", json=body).status_code == 401
    jwt_user = httpx.get(f"{gw.base_url}/admin/teams", headers={"authorization": f"Bearer {_token('red')}"})
    assert jwt_user.status_code == 403
    assert httpx.get(f"{gw.base_url}/admin/teams", headers=ADMIN).json() == {"object": "list", "data": []}

    _team(gw, id="red", max_budget_usd=1.5, rpm=7, metadata={"owner": "ann"})
    _team(gw, id="blue")
    listed = httpx.get(f"{gw.base_url}/admin/teams", headers=ADMIN).json()["data"]
    assert [t["id"] for t in listed] == ["blue", "red"]
    red = httpx.get(f"{gw.base_url}/admin/teams/red", headers=ADMIN).json()
    assert red["budget_period"] == "total" and red["rpm"] == 7 and red["metadata"] == {"owner": "ann"}

    def error(method: str, path: str, body: Any, status: int) -> dict[str, Any]:
        resp = httpx.request(method, f"{gw.base_url}{path}", json=body, headers=ADMIN)
        assert resp.status_code == status, resp.text
        return dict(resp.json()["error"])

    assert error("POST", "/admin/teams", {"id": "red"}, 409)["code"] == "team_exists"
    assert error("POST", "/admin/teams", {"id": "a/b"}, 400)["param"] == "id"
    assert error("POST", "/admin/teams", {"id": "x", "budget_period": "daily"}, 400)["type"] == "invalid_request_error"
    assert error("POST", "/admin/teams", {"id": "x", "rpm": 0}, 400)["param"] == "rpm"
    assert error("POST", "/admin/teams", {"id": "x", "colour": "red"}, 400)["param"] == "colour"
    # A period for a team that has no budget conflicts with the team's state (409); with the budget cleared
    # in the same body it contradicts itself (400, as the spec's if/then states).
    assert error("PATCH", "/admin/teams/blue", {"budget_period": "weekly"}, 409)["param"] == "budget_period"
    cleared = {"budget_period": "weekly", "max_budget_usd": None}
    assert error("PATCH", "/admin/teams/blue", cleared, 400)["param"] == "budget_period"
    assert error("PATCH", "/admin/teams/nobody", {"rpm": 5}, 404)["param"] == "team"
    assert error("DELETE", "/admin/teams/nobody", None, 404)["type"] == "invalid_request_error"

    spec = httpx.get(f"{gw.base_url}/openapi.json").json()
    assert {"post", "get"} <= set(spec["paths"]["/admin/teams"])
    assert {"get", "patch", "delete"} <= set(spec["paths"]["/admin/teams/{team}"])


def _wait_limit(gw: GatewayProcess, key: str, want: str, within_s: float) -> str | None:
    deadline = time.monotonic() + within_s
    while True:
        got = _chat(gw, key, "mock-gpt").headers.get("x-ratelimit-limit-requests")
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_other_replicas_and_the_cli_see_changes_within_the_ttl(
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
    db_url: str,
    tmp_path: Path,
) -> None:
    ttl_s = 0.5
    cfg = _config(fake_openai, db_url, ttl_s=ttl_s)
    a = start_gateway(cfg)
    b = start_gateway(cfg)
    key = _key(a, team="green")
    assert "x-ratelimit-limit-requests" not in _chat(b, key, "mock-gpt").headers  # no limits anywhere yet

    # Made on A: at once on A, within the TTL on B.
    _team(a, id="green", rpm=50)
    assert _chat(a, key, "mock-gpt").headers["x-ratelimit-limit-requests"] == "50"
    assert _wait_limit(b, key, "50", ttl_s + 1.5) == "50"

    # The CLI writes the database directly; both replicas see its team within the TTL.
    cli = [sys.executable, "-m", "lockgate", "teams"]
    made = subprocess.run([*cli, "create", "violet", "--budget", "12.5", "--period", "monthly", "--rpm", "40",
                           "--config", str(a.config_path)], env=a.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    again = subprocess.run(
        [*cli, "create", "violet", "--config", str(a.config_path)], env=a.env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = subprocess.run([*cli, "list", "--config", str(a.config_path)], env=a.env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1:] for line in listed.stdout.splitlines()[1:]}
    assert rows == {"green": ["-", "50", "-"], "violet": ["$12.5/monthly", "40", "-"]}
    violet = _key(a, team="violet")
    for gw in (a, b):
        assert _wait_limit(gw, violet, "40", ttl_s + 1.5) == "40"
