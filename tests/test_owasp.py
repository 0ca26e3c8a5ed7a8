"""The OWASP API Security Top 10 (2023) checks that no other test makes (docs/security.md maps all ten).

Against a real `lockgate serve` with a key store (SQLite), from the outside: one key
reaching for another's objects (API1), admin bodies carrying fields no caller may set
(API3), every admin route of the published spec asked by a virtual key (API5, API6),
and URLs a client names that the gateway must never fetch (API7).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import basic_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.server import ThreadedServer
from tests.harness import MASTER_KEY, GatewayProcess

JWT_SECRET = "owasp-test-jwt-secret-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "hi"}]


class Canary:
    """An HTTP server that only counts who reached it: nothing in these tests should."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self._server = ThreadedServer(self._routes, "canary")
        self.port = 0

    def _routes(self, app: web.Application) -> None:
        async def hit(request: web.Request) -> web.Response:
            self.hits.append(f"{request.method} {request.path}")
            return web.json_response({"keys": []})

        app.router.add_route("*", "/{tail:.*}", hit)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Canary":
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    c = Canary().start()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("owasp-db") / "lockgate.db"


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI, db_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = basic_config(fake_openai_server)
    config["auth"].update(max_failures_per_minute=1000, jwt={"hs256_secret": JWT_SECRET, "claims": {"admin_role": "admin"}})
    config["database"] = {"url": f"sqlite:///{db_path}"}
    config["usage"] = {"flush_interval_s": 0.1}
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("owasp")).start()
    yield gateway
    gateway.stop()


def _new_key(gw: GatewayProcess, name: str) -> tuple[str, str]:
    created = httpx.post(f"{gw.base_url}/admin/keys", headers=ADMIN, json={"name": name}, timeout=10)
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["key"]


def _keys_in_store(db_path: Path, *, but: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM api_keys ORDER BY created_at")]
    return [{k: v for k, v in r.items() if k not in but} for r in rows]


# --- API1: object-level authorisation --------------------------------------------------------


def test_api1_one_key_cannot_reach_another_keys_response_or_usage(gw: GatewayProcess, fake_openai: FakeOpenAI) -> None:
    _, alice = _new_key(gw, "alice")
    _, mallory = _new_key(gw, "mallory")
    as_alice, as_mallory = ({"authorization": f"Bearer {k}"} for k in (alice, mallory))
    created = httpx.post(f"{gw.url}/responses", headers=as_alice, json={"model": "gpt-test", "input": "a secret"}, timeout=20)
    assert created.status_code == 200, created.text
    rid = created.json()["id"]
    for method, path in (("GET", f"/responses/{rid}"), ("GET", f"/responses/{rid}/input_items"), ("DELETE", f"/responses/{rid}")):
        theirs = httpx.request(method, f"{gw.url}{path}", headers=as_mallory, timeout=10)
        # As if it did not exist: a 404 tells nothing about whether the id is real.
        assert theirs.status_code == 404, (method, path, theirs.text)
        assert "a secret" not in theirs.text
    # Mallory's DELETE changed nothing: the owner still reads it.
    assert httpx.get(f"{gw.url}/responses/{rid}", headers=as_alice, timeout=10).status_code == 200
    # Usage: a key sees its own only, whatever it asks for in the query.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        own = httpx.get(f"{gw.url}/usage", headers=as_alice, timeout=10).json()["data"]
        if own:
            break
        time.sleep(0.1)
    assert sum(r["requests"] for r in own) == 1
    for params in ({}, {"key_id": "master"}, {"key": alice}, {"group_by": "model", "key_id": "master"}):
        theirs = httpx.get(f"{gw.url}/usage", headers=as_mallory, params=params, timeout=10)
        assert theirs.status_code == 200 and theirs.json()["data"] == [], (params, theirs.text)


# --- API3: property-level authorisation (mass assignment) -------------------------------------

PRIVILEGED = {
    "id": "key_chosen_by_caller",
    "key": "sk-chosen-by-the-caller-0123456789",
    "key_hash": "0" * 64,
    "key_prefix": "sk-chos",
    "revoked": False,
    "revoked_at": None,
    "created_at": "2020-01-01T00:00:00Z",
    "last_used_at": "2020-01-01T00:00:00Z",
    "spend_usd": -100.0,
    "is_admin": True,
    "role": "admin",
}


@pytest.mark.parametrize("field", sorted(PRIVILEGED))
def test_api3_admin_bodies_refuse_fields_no_caller_may_set(gw: GatewayProcess, db_path: Path, field: str) -> None:
    before = _keys_in_store(db_path)
    created = httpx.post(f"{gw.base_url}/admin/keys", headers=ADMIN, json={"name": "mass", field: PRIVILEGED[field]}, timeout=10)
    assert created.status_code == 400, created.text
    assert created.json()["error"]["type"] == "invalid_request_error"
    assert _keys_in_store(db_path) == before  # nothing was created
    key_id, _ = _new_key(gw, "target")
    rows = {r["id"]: r for r in _keys_in_store(db_path)}
    patched = httpx.patch(f"{gw.base_url}/admin/keys/{key_id}", headers=ADMIN, json={field: PRIVILEGED[field]}, timeout=10)
    assert patched.status_code == 400, patched.text
    assert {r["id"]: r for r in _keys_in_store(db_path)}[key_id] == rows[key_id]  # nothing changed
    team = httpx.post(
        f"{gw.base_url}/admin/teams", headers=ADMIN, json={"team": f"t-{field}", field: PRIVILEGED[field]}, timeout=10
    )
    assert team.status_code == 400, team.text


def test_api3_no_answer_carries_a_secret_and_the_store_holds_only_hashes(gw: GatewayProcess, db_path: Path) -> None:
    key_id, secret = _new_key(gw, "at-rest")
    for path in ("/admin/keys", f"/admin/keys/{key_id}"):
        answer = httpx.get(f"{gw.base_url}{path}", headers=ADMIN, timeout=10)
        assert answer.status_code == 200
        assert secret not in answer.text and "key_hash" not in answer.text
    rows = _keys_in_store(db_path)
    assert rows and all(secret not in str(v) for r in rows for v in r.values())
    mine = next(r for r in rows if r["id"] == key_id)
    assert len(mine["key_hash"]) == 64 and secret.startswith(mine["key_prefix"]) and len(mine["key_prefix"]) < len(secret) // 2


# --- API5 and API6: function-level authorisation, sensitive flows ----------------------------


def _admin_operations(gw: GatewayProcess) -> list[tuple[str, str]]:
    spec = httpx.get(f"{gw.base_url}/openapi.json", timeout=10).json()
    ops = []
    for path, methods in spec["paths"].items():
        if path.startswith("/admin"):
            filled = path.replace("{key_id}", "key_doesnotexist").replace("{team}", "no-such-team")
            ops += [(m.upper(), filled) for m in methods if m in ("get", "post", "patch", "put", "delete")]
    return ops


def test_api5_every_admin_route_in_the_spec_refuses_a_virtual_key_and_a_plain_jwt(gw: GatewayProcess, db_path: Path) -> None:
    ops = _admin_operations(gw)
    # The spec lists every admin route: keys (create, list, get, change, revoke, rotate), teams, usage.
    assert ("POST", "/admin/keys") in ops and ("GET", "/admin/usage") in ops and len(ops) >= 9, ops
    _, key = _new_key(gw, "plain")
    user_jwt = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    admin_jwt = jwt.encode({"sub": "root", "admin": True, "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    before = _keys_in_store(db_path, but=("last_used_at",))  # a refused key was still used
    body = {"name": "escalated", "team": "escalated"}
    for method, path in ops:
        for credential in (key, user_jwt):
            resp = httpx.request(method, gw.base_url + path, headers={"authorization": f"Bearer {credential}"}, json=body)
            assert resp.status_code == 403, (method, path, resp.status_code, resp.text)
        assert httpx.request(method, gw.base_url + path, json=body).status_code == 401, (method, path)
    assert _keys_in_store(db_path, but=("last_used_at",)) == before  # no key minted, changed, rotated or revoked
    # The admin role in a signed token does open it (the check is the role, not the credential's kind).
    assert httpx.get(f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {admin_jwt}"}).status_code == 200


def test_api6_a_forged_admin_claim_is_refused(gw: GatewayProcess) -> None:
    forged = jwt.encode({"sub": "eve", "admin": True, "exp": int(time.time()) + 60}, "not-the-secret-" * 3, algorithm="HS256")
    unsigned = jwt.encode({"sub": "eve", "admin": True}, None, algorithm="none")
    for token in (forged, unsigned):
        resp = httpx.post(f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {token}"}, json={"name": "x"})
        assert resp.status_code == 401, resp.text


# --- API7: server-side request forgery -------------------------------------------------------


def test_api7_the_gateway_fetches_no_url_a_client_names(gw: GatewayProcess, fake_openai: FakeOpenAI, canary: Canary) -> None:
    # Fields and headers a client might hope would redirect the upstream call.
    body = {
        "model": "gpt-test",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": f"{canary.url}/image.png"}},
                ],
            }
        ],
        "api_base": canary.url,
        "base_url": canary.url,
        "extra_headers": {"x-target": canary.url},
    }
    headers = {**ADMIN, "x-api-base": canary.url, "x-forwarded-host": f"127.0.0.1:{canary.port}", "host": f"127.0.0.1:{gw.port}"}
    resp = httpx.post(f"{gw.url}/chat/completions", headers=headers, json=body, timeout=20)
    assert resp.status_code == 200, resp.text
    assert fake_openai.requests, "the configured upstream answered"
    # A JWT whose header points at a key set of the caller's choosing (jku, x5u): never fetched.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(
        {"sub": "eve", "admin": True, "exp": int(time.time()) + 60},
        key,
        algorithm="RS256",
        headers={"jku": f"{canary.url}/jwks.json", "x5u": f"{canary.url}/cert.pem", "kid": "k1"},
    )
    refused = httpx.get(f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert refused.status_code == 401, refused.text
    time.sleep(0.3)
    assert canary.hits == [], canary.hits
