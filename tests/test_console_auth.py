"""Console login, sessions, roles and CSRF, over HTTP against the app (no browser)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lockgate.console.users import Users
from tests.console_support import (
    ADMIN_PW,
    MASTER,
    VIEWER_PW,
    add_user,
    call,
    console_client,
    create_key,
    csrf_of,
    engine,
    login,
)
from tests.dbs import db_url  # noqa: F401
from tests.harness import start_of_a_throttle_window

# Pages any role may read, after one key exists (its id is filled in).
READ_PAGES = [
    "/ui/",
    "/ui/keys",
    "/ui/keys/{key}",
    "/ui/logs",
    "/ui/usage",
    "/ui/usage.csv",
    "/ui/teams",
    "/ui/deployments",
    "/ui/audit",
    "/ui/overview.json",
    "/ui/users",
    "/ui/users/adam",
]
ADMIN_PAGES = ["/ui/keys/new", "/ui/keys/{key}/revoke", "/ui/keys/{key}/rotate"]
# State changes, with a form that would succeed for an admin.
CHANGES = [
    ("/ui/keys", {"name": "by-{role}"}),
    ("/ui/keys/{key}", {"name": "renamed-{role}"}),
    ("/ui/teams", {"id": "team-{role}"}),
    ("/ui/keys/{key}/rotate", {}),
    ("/ui/users", {"username": "user-{role}", "password": "a-long-password-{role}"}),
    ("/ui/users/vera/password", {"password": "a-new-password-{role}"}),
]


def test_every_route_for_admin_viewer_and_no_session(tmp_path: Path) -> None:
    with console_client(tmp_path) as c:
        add_user(c, "vera", VIEWER_PW, "viewer")
        add_user(c, "adam", ADMIN_PW, "admin")
        csrf = login(c, "adam", ADMIN_PW)
        key_id, _, _ = create_key(c, csrf)
        c.cookies.clear()

        # No session: every page sends to the login, with the page to come back to; every change is 401.
        for path in READ_PAGES + ADMIN_PAGES:
            r = c.get(path.format(key=key_id), follow_redirects=False)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/ui/login?next=%2Fui"), path
        for path, form in CHANGES:
            r = c.post(path.format(key=key_id), data={k: v.format(role="anon") for k, v in form.items()}, follow_redirects=False)
            assert r.status_code == 401, path
        assert (
            c.get("/ui/keys", headers={"HX-Request": "true"}, follow_redirects=False)
            .headers["hx-redirect"]
            .startswith("/ui/login")
        )

        # Viewer: reads everything, changes nothing (403 from the server, and audited).
        vcsrf = login(c, "vera", VIEWER_PW)
        for path in READ_PAGES:
            assert c.get(path.format(key=key_id)).status_code == 200, path
        for path in ADMIN_PAGES:
            assert c.get(path.format(key=key_id)).status_code == 403, path
        for path, form in CHANGES:
            data = {"csrf": vcsrf, **{k: v.format(role="viewer") for k, v in form.items()}}
            r = c.post(path.format(key=key_id), data=data, follow_redirects=False)
            assert r.status_code == 403, path
        assert "by-viewer" not in c.get("/ui/keys").text
        assert c.post(f"/ui/keys/{key_id}/revoke", data={"csrf": vcsrf}).status_code == 403
        assert "active" in c.get(f"/ui/keys/{key_id}").text
        refused = c.get(
            "/admin/audit", params={"outcome": "refused", "actor": "vera"}, headers={"authorization": f"Bearer {MASTER}"}
        )
        assert len(refused.json()["data"]) >= len(ADMIN_PAGES) + len(CHANGES)

        # Admin: everything.
        c.cookies.clear()
        acsrf = login(c, "adam", ADMIN_PW)
        for path in READ_PAGES + ADMIN_PAGES:
            assert c.get(path.format(key=key_id)).status_code == 200, path
        for path, form in CHANGES:
            data = {"csrf": acsrf, **{k: v.format(role="admin") for k, v in form.items()}}
            r = c.post(path.format(key=key_id), data=data, follow_redirects=False)
            assert r.status_code in (200, 303), (path, r.text)
        assert "by-admin" in c.get("/ui/keys").text


def test_csrf_token_and_origin_are_both_required(tmp_path: Path) -> None:
    with console_client(tmp_path) as c:
        csrf = login(c)
        # Missing token, wrong token, another session's token.
        assert c.post("/ui/keys", data={"name": "a"}).status_code == 403
        assert c.post("/ui/keys", data={"name": "a", "csrf": "0" * 64}).status_code == 403
        # The right token from another site: refused by Origin and by Fetch Metadata.
        assert c.post("/ui/keys", data={"name": "a", "csrf": csrf}, headers={"Origin": "https://evil.example"}).status_code == 403
        assert c.post("/ui/keys", data={"name": "a", "csrf": csrf}, headers={"Origin": "null"}).status_code == 403
        both = {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"}
        assert c.post("/ui/keys", data={"name": "a", "csrf": csrf}, headers=both).status_code == 403
        assert c.post("/ui/keys", data={"name": "a", "csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert c.post("/ui/keys", data={"name": "a", "csrf": csrf}, headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
        assert "No keys match" in c.get("/ui/keys").text
        # Same origin with the token (as a form or as htmx's header): done.
        ok = {"Origin": "http://127.0.0.1:4000", "Sec-Fetch-Site": "same-origin"}
        assert c.post("/ui/keys", data={"name": "form", "csrf": csrf}, headers=ok).status_code == 200
        assert c.post("/ui/keys", data={"name": "header"}, headers={**ok, "X-CSRF-Token": csrf}).status_code == 200
        # What a browser sends under Referrer-Policy: no-referrer: a null Origin, with Fetch Metadata.
        null_ok = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
        assert c.post("/ui/keys", data={"name": "null", "csrf": csrf}, headers=null_ok).status_code == 200
        # A login from another site is refused too (login CSRF).
        r = c.post("/ui/login", data={"password": MASTER}, headers={"Origin": "https://evil.example"}, follow_redirects=False)
        assert r.status_code == 403


def test_cookie_flags_on_loopback_and_on_https(tmp_path: Path) -> None:
    with console_client(tmp_path) as c:
        r = c.post("/ui/login", data={"password": MASTER}, follow_redirects=False)
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("lockgate_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie and "Secure" not in cookie
        assert MASTER not in cookie and "lg-" not in cookie
        assert r.headers["location"] == "/ui/"
    with console_client(tmp_path, base_url="https://console.example") as c:
        r = c.post("/ui/login", data={"password": MASTER}, follow_redirects=False)
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-lockgate_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie
        assert c.get("/ui/keys").status_code == 200
        assert c.get("/ui/keys").headers["strict-transport-security"]
    with console_client(tmp_path, base_url="http://console.example") as c:
        # Plain http off loopback: a Secure cookie would never come back, so the login says why instead.
        r = c.post("/ui/login", data={"password": MASTER}, follow_redirects=False)
        assert r.status_code == 400 and "HTTPS" in r.text and "set-cookie" not in r.headers


def test_logout_and_password_change_end_sessions_and_login_makes_a_new_id(tmp_path: Path, db_url: str) -> None:
    with console_client(tmp_path, db_url=db_url) as c:
        add_user(c, "adam", ADMIN_PW, "admin")
        csrf = login(c, "adam", ADMIN_PW)
        first = c.cookies["lockgate_session"]
        login(c, "adam", ADMIN_PW)
        second = c.cookies["lockgate_session"]
        assert first != second
        use_cookie(c, first)
        assert c.get("/ui/keys", follow_redirects=False).status_code == 303  # the old id died at the new login

        use_cookie(c, second)
        csrf = csrf_of(c)
        r = c.post("/ui/logout", data={"csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login"
        use_cookie(c, second)  # a browser that kept the cookie anyway
        assert c.get("/ui/keys", follow_redirects=False).status_code == 303

        login(c, "adam", ADMIN_PW)
        third = c.cookies["lockgate_session"]
        call(c, Users(engine(c)).set_password, "adam", "another-password-456")
        use_cookie(c, third)
        assert c.get("/ui/keys", follow_redirects=False).status_code == 303
        login(c, "adam", "another-password-456")
        call(c, Users(engine(c)).set_disabled, "adam", True)
        assert c.get("/ui/keys", follow_redirects=False).status_code == 303
        r = c.post("/ui/login", data={"username": "adam", "password": "another-password-456"}, follow_redirects=False)
        assert r.status_code == 401


def test_idle_expiry_and_the_way_back_to_the_page_asked_for(tmp_path: Path) -> None:
    with console_client(tmp_path, session_idle_s=1.0) as c:
        login(c)
        time.sleep(1.2)
        r = c.get("/ui/logs?status=error", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Flogs%3Fstatus%3Derror"
        r = c.post("/ui/login", data={"password": MASTER, "next": "/ui/logs?status=error"}, follow_redirects=False)
        assert r.headers["location"] == "/ui/logs?status=error"
        # Never to another site.
        for target in ("https://evil.example/ui/", "//evil.example/ui/x", "/admin/keys", "/ui\\evil"):
            r = c.post("/ui/login", data={"password": MASTER, "next": target}, follow_redirects=False)
            assert r.headers["location"] == "/ui/", target


def test_login_throttle_per_user_and_per_address(tmp_path: Path) -> None:
    start_of_a_throttle_window()
    with console_client(tmp_path, login_failures_per_user=3, login_failures_per_address=6) as c:
        add_user(c, "adam", ADMIN_PW, "admin")
        wrong = c.post("/ui/login", data={"username": "adam", "password": "not-the-password"})
        unknown = c.post("/ui/login", data={"username": "nobody", "password": "not-the-password"})
        assert wrong.status_code == unknown.status_code == 401
        assert "Wrong user name or password" in wrong.text and "Wrong user name or password" in unknown.text
        for _ in range(2):
            c.post("/ui/login", data={"username": "adam", "password": "still-wrong"})
        # Three failures for adam: even the right password is refused for a while.
        r = c.post("/ui/login", data={"username": "adam", "password": ADMIN_PW}, follow_redirects=False)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "set-cookie" not in r.headers
        # Per address: failures spread over names still add up (1 + 3 so far, then 2 more).
        for name in ("x1", "x2"):
            assert c.post("/ui/login", data={"username": name, "password": "guess-guess"}).status_code == 401
        r = c.post("/ui/login", data={"password": MASTER}, follow_redirects=False)
        assert r.status_code == 429 and r.headers["retry-after"]
        audit = c.app.state.gateway  # type: ignore[attr-defined]
        from lockgate.audit import AuditLog

        rows = call(c, AuditLog(audit.store.engine).page, limit=100)
        actions = [r["action"] for r in rows]
        assert actions.count("login_failed") == 6 and "login_throttled" in actions
        assert all(r["actor"] != "nobody" for r in rows)  # an unknown name typed is not recorded as typed
        assert not any(ADMIN_PW in str(r) or MASTER in str(r) for r in rows)


def use_cookie(c: object, value: str) -> None:
    c.cookies.clear()  # type: ignore[attr-defined]
    c.cookies.set("lockgate_session", value, domain="127.0.0.1")  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/keys"])
def test_console_off(tmp_path: Path, path: str) -> None:
    with console_client(tmp_path, enabled=False) as c:
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_another_path_and_a_root_path(tmp_path: Path) -> None:
    with console_client(tmp_path, path="/admin-ui", root_path="/gw") as c:
        r = c.get("/gw/admin-ui/keys", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/gw/admin-ui/login?next=%2Fgw%2Fadmin-ui%2Fkeys"
        page = c.get("/gw/admin-ui/login").text
        assert 'action="/gw/admin-ui/login"' in page and 'src="/gw/admin-ui/static/console.js?v=' in page
        r = c.post("/gw/admin-ui/login", data={"password": MASTER, "next": "/gw/admin-ui/keys"}, follow_redirects=False)
        assert r.headers["location"] == "/gw/admin-ui/keys"
        assert 'href="/gw/admin-ui/keys/new"' in c.get("/gw/admin-ui/keys").text


def test_a_new_master_key_ends_the_old_master_sessions(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from lockgate.config import Config
    from tests import console_support

    with console_client(tmp_path) as c:
        login(c)
        cookie = c.cookies["lockgate_session"]
    original = console_support.console_config

    def with_other_master(tmp: Path, db_url: str | None = None, **ui: object) -> Config:
        config = original(tmp, db_url, **ui)
        return config.model_copy(
            update={"auth": config.auth.model_copy(update={"master_key": SecretStr("sk-a-new-master-key-99")})}
        )

    console_support.console_config = with_other_master  # type: ignore[assignment]
    try:
        with console_client(tmp_path) as c:  # the same database, a gateway restarted with another master key
            use_cookie(c, cookie)
            assert c.get("/ui/keys", follow_redirects=False).status_code == 303
            assert c.post("/ui/login", data={"password": MASTER}, follow_redirects=False).status_code == 401
            assert c.post("/ui/login", data={"password": "sk-a-new-master-key-99"}, follow_redirects=False).status_code == 303
    finally:
        console_support.console_config = original
