"""Key-scope limits end to end: virtual keys made through POST /admin/keys carry their own rpm/tpm."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import basic_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, require_service

TTL_S = 0.3


def config(fake: FakeOpenAI, **ratelimit: Any) -> dict[str, Any]:
    cfg = basic_config(fake, ratelimit=ratelimit, redis={"key_prefix": f"lgtest:{uuid.uuid4().hex[:12]}:"})
    cfg["auth"].update(key_cache_ttl_s=TTL_S)
    return cfg


def create_key(gw: GatewayProcess, **fields: Any) -> dict[str, Any]:
    resp = httpx.post(
        f"{gw.base_url}/admin/keys", json={"name": "rl", **fields}, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


def chat(gw: GatewayProcess, key: str, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], **extra},
    )


def test_key_rpm_own_limit_beats_defaults(fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(config(fake_openai, defaults={"rpm": 5}))
    tight = create_key(gw, rpm=2)
    plain = create_key(gw)
    for remaining in ("1", "0"):
        resp = chat(gw, tight["key"])
        assert resp.status_code == 200 and resp.headers["x-ratelimit-remaining-requests"] == remaining
    refused = chat(gw, tight["key"])
    assert refused.status_code == 429
    message = refused.json()["error"]["message"]
    assert f"for key `{tight['id']}` on requests per min (RPM): Limit 2, Used 2, Requested 1." in message
    assert tight["key"] not in message and tight["key"] not in gw.logs()
    # Another key has its own window, with the defaults.
    resp = chat(gw, plain["key"])
    assert resp.status_code == 200 and resp.headers["x-ratelimit-limit-requests"] == "5"
    # Raising the key's limit applies once the key cache refreshes; its usage so far still counts.
    patched = httpx.patch(
        f"{gw.base_url}/admin/keys/{tight['id']}", json={"rpm": 3}, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10
    )
    assert patched.status_code == 200, patched.text
    time.sleep(TTL_S + 0.2)
    resp = chat(gw, tight["key"])
    assert resp.status_code == 200 and resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert chat(gw, tight["key"]).status_code == 429


def test_key_tpm(fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(config(fake_openai))
    key = create_key(gw, tpm=300)
    resp = chat(gw, key["key"], max_tokens=200)
    assert resp.status_code == 200 and resp.headers["x-ratelimit-limit-tokens"] == "300"
    refused = chat(gw, key["key"], max_tokens=400)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith(f"Request too large for key `{key['id']}` on tokens per min (TPM)")


def test_team_limit_is_shared_by_its_keys(fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(config(fake_openai, teams={"red": {"rpm": 3}}))
    a, b = create_key(gw, team="red", rpm=10), create_key(gw, team="red")
    outsider = create_key(gw, team="blue")
    assert [chat(gw, k["key"]).status_code for k in (a, b, a, b)] == [200, 200, 200, 429]
    assert "for team `red`" in chat(gw, a["key"]).json()["error"]["message"]
    assert chat(gw, outsider["key"]).status_code == 200


def test_key_limit_across_two_gateways_through_redis(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess], tmp_path: Any
) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    cfg = config(fake_openai, backend="redis")
    cfg["database"] = {"url": f"sqlite:///{tmp_path}/shared-keys.db"}  # both replicas read one key store
    a = start_gateway(cfg)
    b = start_gateway(cfg)
    key = create_key(a, rpm=3)
    statuses = [chat(gw, key["key"]).status_code for gw in (a, b, a, b, a)]
    assert statuses == [200, 200, 200, 429, 429]
