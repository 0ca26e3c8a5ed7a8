"""JWTs through a real `lockgate serve`: HS256 and a JWKS rotation on a real IdP server, claim-based
model access and admin role, bad tokens, the brute-force guard — and no token in the logs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import openai
import pytest

from tests.conftest import basic_config
from tests.fakes.jwks_server import AUDIENCE, ISSUER, FakeIdP
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, start_of_a_throttle_window

SECRET = "jwt-shared-secret-for-gateway-tests-0123456789"
TOKENS: list[str] = []  # every token sent: none may reach the logs


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    server = FakeIdP().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(idp: FakeIdP, fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("gw-jwt")
    config = basic_config(fake_openai_server)
    config["auth"].update(
        max_failures_per_minute=1000,
        jwt={
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_url": idp.jwks_url,
            "hs256_secret": "${TEST_JWT_SECRET}",
            "claims": {"user": "sub", "team": "org_id", "models": "lockgate_models", "admin_role": "lockgate_admin"},
            "leeway_s": 0,
            "jwks_min_refetch_interval_s": 0.2,
        },
    )
    config["database"] = {"url": f"sqlite:///{workdir / 'jwt.db'}"}
    gw = GatewayProcess(config, workdir, env={"TEST_JWT_SECRET": SECRET}).start()
    yield gw
    gw.stop()


def hs256(**claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "exp": now + 120, **claims}
    token = jwt.encode({k: v for k, v in payload.items() if v is not None}, SECRET, algorithm="HS256")
    TOKENS.append(token)
    return token


def call(gateway: GatewayProcess, token: str, model: str = "mock-gpt") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def test_hs256_token_with_a_model_claim(gateway: GatewayProcess) -> None:
    token = hs256(org_id="acme", lockgate_models=["mock-gpt"])
    client = openai.OpenAI(base_url=gateway.url, api_key=token, max_retries=0)
    reply = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert [m.id for m in client.models.list()] == ["mock-gpt"]
    lines = gateway.wait_for_records(1)
    assert any(r.get("key_id") == "jwt:bob" and r.get("team") == "acme" for r in lines)


def test_admin_role_opens_the_admin_api_and_nothing_else_does(gateway: GatewayProcess) -> None:
    admin = hs256(sub="root", lockgate_admin=True)
    created = httpx.post(f"{gateway.base_url}/admin/keys", json={"name": "by-jwt"}, headers={"authorization": f"Bearer {admin}"})
    assert created.status_code == 201, created.text
    TOKENS.append(created.json()["key"])
    assert call(gateway, created.json()["key"]).status_code == 200
    for token in (hs256(), hs256(lockgate_admin=False), hs256(lockgate_admin="nope")):
        refused = httpx.get(f"{gateway.base_url}/admin/keys", headers={"authorization": f"Bearer {token}"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_required"


def test_bad_tokens_get_401(gateway: GatewayProcess) -> None:
    good = hs256()
    now = int(time.time())
    forged = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 60, "lockgate_admin": True},
        "a-different-secret-of-enough-length-xx",
        algorithm="HS256",
    )
    TOKENS.append(forged)
    bad = [
        hs256(exp=now - 10),
        hs256(nbf=now + 600),
        hs256(aud="other"),
        hs256(iss="https://evil.example/"),
        forged,
        good[:-4] + "AAAA",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "not-a-token-at-all",
        "x.y.z",
    ]
    for token in bad:
        resp = call(gateway, token)
        assert resp.status_code == 401, (token, resp.text)
        body = resp.json()["error"]
        assert body["code"] == "invalid_api_key" and token not in resp.text


def test_jwks_rs256_es256_and_rotation(gateway: GatewayProcess, idp: FakeIdP) -> None:
    rsa_key, ec_key = idp.keys
    for key in (rsa_key, ec_key):
        token = idp.token(key, sub=f"user-{key.alg}")
        TOKENS.append(token)
        assert call(gateway, token).status_code == 200
    old = idp.token(rsa_key)
    TOKENS.append(old)
    new_key = idp.rotate("ES256")
    time.sleep(0.3)  # past jwks_min_refetch_interval_s
    fetches = idp.fetches
    fresh = idp.token(new_key, sub="after-rotation")
    TOKENS.append(fresh)
    assert call(gateway, fresh).status_code == 200  # unknown kid → refetch → verified
    assert idp.fetches == fetches + 1
    assert call(gateway, old).status_code == 401  # the retired key is gone
    # Forged kids cannot make the gateway hammer the IdP.
    before, started = idp.fetches, time.monotonic()
    for i in range(30):
        forged = idp.token(new_key, kid=f"forged-{i}")
        TOKENS.append(forged)
        assert call(gateway, forged).status_code == 401
    # At most one refetch per jwks_min_refetch_interval_s (0.2 s here), however many forged kids arrive.
    assert idp.fetches - before <= (time.monotonic() - started) / 0.2 + 1
    assert idp.fetches - before < 30


def test_zz_no_token_in_the_logs(gateway: GatewayProcess) -> None:
    logs = gateway.logs()
    assert "jwks_fetched" in logs
    assert TOKENS
    for secret in [SECRET, MASTER_KEY, *TOKENS]:
        assert secret not in logs
        assert secret.split(".")[-1] not in logs or len(secret.split(".")[-1]) < 8  # no signature either
    assert "Traceback" not in logs


# --- the brute-force guard over HTTP ------------------------------------------------------


def test_brute_force_guard_answers_429(start_gateway: Any, fake_openai: FakeOpenAI, tmp_path: Any) -> None:
    config = basic_config(fake_openai)
    config["auth"].update(max_failures_per_minute=5)
    config["database"] = {"url": f"sqlite:///{tmp_path / 'guard.db'}"}
    gw = start_gateway(config)
    start_of_a_throttle_window()  # the block is reached exactly at the limit: keep the checks in one window
    guesses = [f"lg-guess-{i:04d}-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" for i in range(5)]
    for guess in guesses:
        assert call(gw, guess).status_code == 401
    blocked = call(gw, "lg-guess-9999")
    assert blocked.status_code == 429
    assert blocked.json()["error"]["code"] == "too_many_authentication_failures"
    assert int(blocked.headers["retry-after"]) >= 1
    # While blocked, even the right key is refused: the guard is no oracle. Other routes too.
    assert call(gw, MASTER_KEY).status_code == 429
    assert httpx.get(f"{gw.url}/models", headers={"authorization": f"Bearer {MASTER_KEY}"}).status_code == 429
    assert httpx.get(f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"}).status_code == 429
    logs = gw.logs()
    for guess in guesses:
        assert guess not in logs
