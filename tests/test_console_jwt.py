"""Console login with an admin JWT (auth.jwt), against a real fake identity provider serving a JWKS over HTTP.

The token is checked by the gateway's verifier (signature from the JWKS, exp, iss, aud); only a
token with the admin role opens a session, an opaque id like a password login's: the token never
appears in a cookie, and the session ends with the token's `exp`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from tests.console_support import MASTER, console_client, create_key, csrf_of
from tests.fakes.jwks_server import AUDIENCE, ISSUER, FakeIdP, SigningKey
from tests.harness import start_of_a_throttle_window

ADMIN = {"authorization": f"Bearer {MASTER}"}


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    server = FakeIdP().start()
    yield server
    server.stop()


def jwt_config(idp: FakeIdP) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_url": idp.jwks_url,
        "claims": {"user": "sub", "admin_role": "lockgate_admin"},
        "leeway_s": 0,
    }


def jwt_login(c: Any, token: str, next_page: str = "/ui/") -> Any:
    return c.post("/ui/login/jwt", data={"token": token, "next": next_page}, follow_redirects=False)


def test_an_admin_jwt_opens_an_opaque_session(tmp_path: Path, idp: FakeIdP) -> None:
    with console_client(tmp_path, jwt=jwt_config(idp)) as c:
        page = c.get("/ui/login").text
        assert 'action="/ui/login/jwt"' in page  # offered only when auth.jwt is set
        token = idp.token(sub="alice", lockgate_admin=True)
        r = jwt_login(c, token, "/ui/keys")
        assert r.status_code == 303 and r.headers["location"] == "/ui/keys"
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert token not in cookie and token.split(".")[1] not in cookie  # an opaque id, not the token
        session_id = c.cookies.get("lockgate_session")
        assert session_id and "." not in session_id and len(session_id) < 60
        # An admin: may change things (with the session's CSRF token).
        csrf = csrf_of(c)
        key_id, _, _ = create_key(c, csrf, name="made-by-jwt-admin")
        audit = c.get("/admin/audit", params={"actor": "jwt:alice"}, headers=ADMIN).json()["data"]
        assert {"login", "key.create"} <= {a["action"] for a in audit}
        assert token not in c.get("/admin/audit", headers=ADMIN).text
        # The token is not accepted as a session cookie, and logout ends the session.
        assert c.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        c.cookies.clear()
        c.cookies.set("lockgate_session", session_id)
        assert c.get("/ui/keys", follow_redirects=False).status_code == 303
        c.cookies.set("lockgate_session", token)
        assert c.get("/ui/keys", follow_redirects=False).status_code == 303
        assert key_id


def test_tokens_that_do_not_open_a_session(tmp_path: Path, idp: FakeIdP) -> None:
    stranger = SigningKey.new("RS256")  # not in the JWKS
    now = int(time.time())
    cases = {
        "not admin": (idp.token(sub="bob"), 403),
        "admin false": (idp.token(sub="bob", lockgate_admin=False), 403),
        "expired": (idp.token(sub="alice", lockgate_admin=True, iat=now - 600, exp=now - 60), 401),
        "other audience": (idp.token(sub="alice", lockgate_admin=True, aud="someone-else"), 401),
        "other issuer": (idp.token(sub="alice", lockgate_admin=True, iss="https://evil.example/"), 401),
        "unknown key": (idp.token(stranger, sub="alice", lockgate_admin=True), 401),
        "alg none": (pyjwt.encode({"sub": "alice", "lockgate_admin": True, "exp": now + 60}, None, algorithm="none"), 401),
        "garbage": ("not-a-token", 401),
        "empty": ("", 401),
    }
    with console_client(tmp_path, jwt=jwt_config(idp), login_failures_per_address=100) as c:
        for name, (token, status) in cases.items():
            r = jwt_login(c, token)
            assert r.status_code == status, (name, r.text)
            assert "set-cookie" not in r.headers, name
            assert 'id="error"' in r.text, name
            assert c.get("/ui/keys", follow_redirects=False).status_code == 303, name
        failed = c.get("/admin/audit", params={"action": "login_failed"}, headers=ADMIN).json()["data"]
        assert len(failed) == len(cases)
        assert {a["actor"] for a in failed} == {"jwt:bob", "(jwt)"}  # a bad token's claims are not trusted


def test_the_session_ends_with_the_token(tmp_path: Path, idp: FakeIdP) -> None:
    with console_client(tmp_path, jwt=jwt_config(idp)) as c:
        r = jwt_login(c, idp.token(sub="short", lockgate_admin=True, exp=int(time.time()) + 3))
        assert r.status_code == 303
        max_age = int(r.headers["set-cookie"].split("Max-Age=")[1].split(";")[0])
        assert 0 < max_age <= 3
        assert c.get("/ui/keys").status_code == 200
        time.sleep(3.5)
        r = c.get("/ui/keys", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_jwt_login_is_throttled_and_off_without_auth_jwt(tmp_path: Path, idp: FakeIdP) -> None:
    with console_client(tmp_path, jwt=jwt_config(idp), login_failures_per_address=3) as c:
        start_of_a_throttle_window()
        for _ in range(3):
            assert jwt_login(c, idp.token(sub="bob")).status_code == 403
        r = jwt_login(c, idp.token(sub="alice", lockgate_admin=True))  # a good token too, once over the limit
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    (tmp_path / "off").mkdir()
    with console_client(tmp_path / "off") as c:
        assert 'action="/ui/login/jwt"' not in c.get("/ui/login").text
        assert jwt_login(c, idp.token(sub="alice", lockgate_admin=True)).status_code == 404
