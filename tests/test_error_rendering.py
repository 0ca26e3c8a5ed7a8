"""Errors outside the pipeline are rendered like those inside it (errors.render), over HTTP:
a throttled caller gets Retry-After on every route, a budget back-end outage is the gateway's
503 (not a budget refusal), and admin conflicts are 409s of the caller's fault domain."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from lockgate.errors import DOMAINS, GatewayError, render
from tests.conftest import basic_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, start_of_a_throttle_window
from tests.test_ratelimit_e2e import own_redis  # noqa: F401 (a fixture: a redis-server this test may kill)

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


def test_throttled_caller_gets_retry_after_on_every_route(start_gateway: Any, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    config = basic_config(fake_openai)
    config["auth"].update(max_failures_per_minute=3)
    config["database"] = {"url": f"sqlite:///{tmp_path / 'throttle.db'}"}
    gw = start_gateway(config)
    start_of_a_throttle_window()
    for i in range(3):
        wrong = {"authorization": f"Bearer lg-wrong-{i:04d}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}
        assert httpx.get(f"{gw.url}/models", headers=wrong).status_code == 401
    for path in ("/v1/models", "/v1/models/gpt-test", "/v1/usage", "/admin/keys", "/admin/teams", "/admin/usage"):
        blocked = httpx.get(gw.base_url + path, headers=ADMIN)
        assert blocked.status_code == 429, path
        assert blocked.json()["error"]["code"] == "too_many_authentication_failures", path
        assert int(blocked.headers["retry-after"]) >= 1, path
    chat = httpx.post(f"{gw.url}/chat/completions", headers=ADMIN, json={"model": "gpt-test", "messages": []})
    assert chat.status_code == 429 and int(chat.headers["retry-after"]) >= 1


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_budget_backend_outage_is_a_gateway_503_not_a_refusal(
    start_gateway: Any,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    own_redis: tuple[int, "subprocess.Popen[bytes]"],
) -> None:
    port, redis = own_redis
    config = basic_config(fake_openai)
    config["database"] = {"url": f"sqlite:///{tmp_path / 'budget.db'}"}
    # Budget counters in a Redis stopped once the gateway is up; the key has no rate limits, so only budgets ask it.
    config["redis"] = {"url": f"redis://127.0.0.1:{port}/0", "on_error": "deny"}
    config["budgets"] = {"backend": "redis"}
    gw = start_gateway(config)
    created = httpx.post(f"{gw.base_url}/admin/keys", headers=ADMIN, json={"name": "b", "max_budget_usd": 5})
    assert created.status_code == 201, created.text
    redis.kill()
    redis.wait(5)
    key = {"authorization": f"Bearer {created.json()['key']}"}
    answer = httpx.post(
        f"{gw.url}/chat/completions", headers=key, json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "budget_unavailable" and error["type"] == "server_error"
    assert answer.headers["retry-after"] == "1"
    metrics = httpx.get(f"{gw.base_url}/metrics").text
    assert _metric(metrics, "lockgate_requests_total", error_type="gateway_budget_unavailable") == 1
    assert _metric(metrics, "lockgate_budget_refused_total") == 0


def test_admin_conflicts_are_409s_in_the_caller_domain(start_gateway: Any, fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    config = basic_config(fake_openai)
    config["database"] = {"url": f"sqlite:///{tmp_path / 'conflict.db'}"}
    gw = start_gateway(config)
    assert httpx.post(f"{gw.base_url}/admin/teams", headers=ADMIN, json={"id": "red"}).status_code == 201
    again = httpx.post(f"{gw.base_url}/admin/teams", headers=ADMIN, json={"id": "red"})
    assert again.status_code == 409
    assert again.json()["error"] == {
        "message": "A team `red` already exists; change it with PATCH /admin/teams/red.",
        "type": "invalid_request_error",
        "param": "id",
        "code": "team_exists",
    }
    key = httpx.post(f"{gw.base_url}/admin/keys", headers=ADMIN, json={"name": "k"}).json()
    assert httpx.delete(f"{gw.base_url}/admin/keys/{key['id']}", headers=ADMIN).status_code == 200
    rotate = httpx.post(f"{gw.base_url}/admin/keys/{key['id']}/rotate", headers=ADMIN)
    assert rotate.status_code == 409 and rotate.json()["error"]["code"] == "key_revoked"
    assert "Traceback" not in gw.logs()


# --- the vocabulary itself --------------------------------------------------------------------


def test_every_error_class_declares_its_domain() -> None:
    def all_subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *all_subclasses(sub))]

    for cls in all_subclasses(GatewayError):
        assert cls.domain in DOMAINS and re.fullmatch(rf"{cls.domain}_[a-z_]+", cls.kind), cls

    with pytest.raises(TypeError, match="must declare kind"):

        class Undeclared(GatewayError):
            status = 418

    with pytest.raises(TypeError, match="must declare kind"):

        class WrongDomain(GatewayError):
            kind = "somebody_else"

    with pytest.raises(TypeError, match="abstract"):
        GatewayError("plain")


def test_render_sets_retry_after_only_where_a_wait_helps() -> None:
    from lockgate.errors import BudgetUnavailable, InvalidRequest, RateLimited

    limited = render(
        RateLimited("slow", retry_after_s=2.4, headers={"x-ratelimit-remaining-requests": "0"}), headers={"x-a": "1"}
    )
    assert limited.status == 429
    assert limited.headers == {"x-a": "1", "x-ratelimit-remaining-requests": "0", "retry-after": "2"}
    assert render(BudgetUnavailable("down", retry_after_s=0.2)).headers["retry-after"] == "1"
    assert "retry-after" not in render(InvalidRequest("bad", retry_after_s=3)).headers
