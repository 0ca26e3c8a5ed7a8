"""Console user management over HTTP: admins list, create, re-role, reset, disable, enable and delete users;
the changed user's sessions end at once; viewers are refused by the server (403); CSRF and origin
are enforced; every change is audited without a password or hash."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.console_support import ADMIN_PW, MASTER, VIEWER_PW, add_user, console_client, login
from tests.dbs import db_url  # noqa: F401

ADMIN = {"authorization": f"Bearer {MASTER}"}
NEW_PW = "a-brand-new-password-1"


COOKIE = "lockgate_session"


def use(c: TestClient, cookie: str | None) -> str | None:
    """Make the client send `cookie` as its session (another person's browser); returns the one it had."""
    mine = c.cookies.get(COOKIE)
    c.cookies.clear()
    if cookie:
        c.cookies.set(COOKIE, cookie)
    return mine


def login_as(c: TestClient, username: str, password: str) -> tuple[str, str]:
    """A new session in another browser: (its cookie, its CSRF token); the client keeps its own session."""
    mine = use(c, None)
    csrf = login(c, username, password)
    theirs = use(c, mine)
    assert theirs
    return theirs, csrf


def status_as(c: TestClient, cookie: str, path: str, csrf: str | None = None, **form: str) -> int:
    """GET (or POST with a form, when csrf is given) `path` from the browser holding `cookie`."""
    mine = use(c, cookie)
    try:
        if csrf is None:
            return c.get(path, follow_redirects=False).status_code
        return c.post(path, data={"csrf": csrf, **form}, follow_redirects=False).status_code
    finally:
        use(c, mine)


def can_log_in(c: TestClient, username: str, password: str) -> bool:
    mine = use(c, None)
    try:
        r = c.post("/ui/login", data={"username": username, "password": password}, follow_redirects=False)
        return r.status_code == 303
    finally:
        use(c, mine)


def post(c: TestClient, path: str, csrf: str, **form: str) -> int:
    return c.post(path, data={"csrf": csrf, **form}, follow_redirects=False).status_code


def test_an_admin_manages_users_and_their_sessions_end(tmp_path: Path, db_url: str) -> None:
    with console_client(tmp_path, db_url=db_url) as c:
        add_user(c, "adam", ADMIN_PW, "admin")
        csrf = login(c, "adam", ADMIN_PW)
        # Create, as a viewer.
        assert post(c, "/ui/users", csrf, username="carol", password=VIEWER_PW, role="viewer") == 303
        listing = c.get("/ui/users").text
        assert re.findall(r'class="user-name">([^<]+)<', listing) == ["adam", "carol"]
        assert post(c, "/ui/users", csrf, username="carol", password=VIEWER_PW, role="viewer") == 409
        for bad in (
            {"username": "has:colon", "password": VIEWER_PW},
            {"username": "master", "password": VIEWER_PW},
            {"username": "short-pw", "password": "short"},
            {"username": "bad-role", "password": VIEWER_PW, "role": "root"},
        ):
            r = c.post("/ui/users", data={"csrf": csrf, **bad})
            assert r.status_code == 400 and 'id="error"' in r.text, bad
        assert "short-pw" not in c.get("/ui/users").text

        carol, _ = login_as(c, "carol", VIEWER_PW)
        assert status_as(c, carol, "/ui/users") == 200
        # Role change: carol's session ends; she logs in again, as an admin now.
        assert post(c, "/ui/users/carol/role", csrf, role="admin") == 303
        assert status_as(c, carol, "/ui/keys") == 303
        carol, carol_csrf = login_as(c, "carol", VIEWER_PW)
        assert status_as(c, carol, "/ui/users", carol_csrf, username="dave", password=VIEWER_PW) == 303
        # Password reset: her session ends, the old password stops working, the new one works.
        assert post(c, "/ui/users/carol/password", csrf, password=NEW_PW) == 303
        assert status_as(c, carol, "/ui/keys") == 303
        assert not can_log_in(c, "carol", VIEWER_PW)
        carol, _ = login_as(c, "carol", NEW_PW)
        # Disabled: session ends, no login; enabled again: login works.
        assert post(c, "/ui/users/carol/disable", csrf) == 303
        assert status_as(c, carol, "/ui/keys") == 303
        assert not can_log_in(c, "carol", NEW_PW)
        assert '<dd id="state">disabled</dd>' in c.get("/ui/users/carol").text
        assert post(c, "/ui/users/carol/enable", csrf) == 303
        carol, _ = login_as(c, "carol", NEW_PW)
        # Delete needs the name typed; then her session ends and the user is gone.
        assert post(c, "/ui/users/carol/delete", csrf, confirm="wrong") == 400
        assert status_as(c, carol, "/ui/keys") == 200
        assert post(c, "/ui/users/carol/delete", csrf, confirm="carol") == 303
        assert status_as(c, carol, "/ui/keys") == 303
        assert c.get("/ui/users/carol").status_code == 404
        assert not can_log_in(c, "carol", NEW_PW)

        # Not one's own account (no lock-out from here).
        for action, form in (("role", {"role": "viewer"}), ("disable", {}), ("delete", {"confirm": "adam"})):
            assert post(c, f"/ui/users/adam/{action}", csrf, **form) == 409, action
        assert c.get("/ui/keys").status_code == 200
        assert post(c, "/ui/users/nobody/role", csrf, role="admin") == 404
        assert post(c, "/ui/users/dave/sideways", csrf) == 404

        audit = c.get("/admin/audit", params={"actor": "adam"}, headers=ADMIN).json()["data"]
        actions = [a["action"] for a in audit if a["target_type"] == "user"]
        for action in ("user.create", "user.role", "user.password", "user.disable", "user.enable", "user.delete"):
            assert action in actions, action
        role_change = next(a for a in audit if a["action"] == "user.role")
        assert role_change["before"]["role"] == "viewer" and role_change["after"]["role"] == "admin"
        dump = c.get("/admin/audit", headers=ADMIN).text
        assert NEW_PW not in dump and VIEWER_PW not in dump and "argon2" not in dump


def test_viewers_and_forged_requests_change_no_user(tmp_path: Path) -> None:
    with console_client(tmp_path) as c:
        add_user(c, "vera", VIEWER_PW, "viewer")
        add_user(c, "target", ADMIN_PW, "admin")
        vcsrf = login(c, "vera", VIEWER_PW)
        assert c.get("/ui/users").status_code == 200
        page = c.get("/ui/users/target").text
        assert 'id="set-role"' not in page and 'id="create-user"' not in c.get("/ui/users").text  # no buttons...
        changes = [
            ("/ui/users", {"username": "eve", "password": VIEWER_PW, "role": "admin"}),
            ("/ui/users/target/role", {"role": "viewer"}),
            ("/ui/users/target/password", {"password": NEW_PW}),
            ("/ui/users/target/disable", {}),
            ("/ui/users/target/delete", {"confirm": "target"}),
            ("/ui/users/vera/role", {"role": "admin"}),  # nor promote herself
        ]
        for path, form in changes:  # ...and the server refuses the requests themselves
            assert post(c, path, vcsrf, **form) == 403, path
        refused = c.get("/admin/audit", params={"outcome": "refused", "actor": "vera"}, headers=ADMIN).json()["data"]
        assert len(refused) >= len(changes)

        c.cookies.clear()
        csrf = login(c)  # master key: an admin
        assert post(c, "/ui/users/target/disable", "0" * 64) == 403  # a wrong CSRF token
        assert c.post("/ui/users/target/disable", follow_redirects=False).status_code == 403  # none
        r = c.post("/ui/users/target/disable", data={"csrf": csrf}, headers={"origin": "https://evil.example"})
        assert r.status_code == 403
        r = c.post("/ui/users/target/disable", data={"csrf": csrf}, headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        assert ">active<" in c.get("/ui/users/target").text
        assert "eve" not in c.get("/ui/users").text
        assert '<dd id="role">viewer</dd>' in c.get("/ui/users/vera").text
