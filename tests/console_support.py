"""Shared pieces of the console tests: the gateway app on a throwaway SQLite database, and logging in.

The app runs in-process behind Starlette's TestClient (real HTTP semantics, cookies kept by the
client); `base_url` decides what the console sees as its origin (http on loopback, or https).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from lockgate.app import create_app
from lockgate.config import parse_config

MASTER = "sk-console-master-0123456789"
ADMIN_PW = "admin-password-123"
VIEWER_PW = "viewer-password-123"
LOOPBACK = "http://127.0.0.1:4000"


def console_config(tmp: Path, db_url: str | None = None, jwt: dict[str, Any] | None = None, **ui: Any) -> Any:
    """The test config; `jwt` is an `auth.jwt` section (token login)."""
    auth: dict[str, Any] = {"master_key": MASTER, "key_cache_ttl_s": 0}
    if jwt is not None:
        auth["jwt"] = jwt
    return parse_config(
        {
            "auth": auth,
            "database": {"url": db_url or f"sqlite:///{tmp}/console.db"},
            "usage": {"spool_dir": str(tmp / "spool"), "flush_interval_s": 0.05},
            "telemetry": {"access_log": False, "metrics": False},
            "models": [
                {
                    "name": "mock-gpt",
                    "deployments": [
                        {
                            "provider": "mock",
                            "model": "mock-gpt",
                            "id": "mock-a",
                            "input_cost_per_mtok": 1000,
                            "output_cost_per_mtok": 2000,
                        }
                    ],
                }
            ],
            "ui": ui,
        }
    )


@contextmanager
def console_client(
    tmp: Path,
    base_url: str = LOOPBACK,
    root_path: str = "",
    db_url: str | None = None,
    jwt: dict[str, Any] | None = None,
    **ui: Any,
) -> Iterator[TestClient]:
    extra = {"jwt": jwt} if jwt is not None else {}
    app = create_app(console_config(tmp, db_url, **extra, **ui), configure_logs=False)
    with TestClient(app, base_url=base_url, root_path=root_path) as client:
        yield client


def call(client: TestClient, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an async function on the app's event loop (the engine belongs to it)."""
    assert client.portal is not None
    return client.portal.call(lambda: fn(*args, **kwargs))


def engine(client: TestClient) -> Any:
    return client.app.state.gateway.store.engine  # type: ignore[attr-defined]


def add_user(client: TestClient, name: str, password: str, role: str) -> None:
    from lockgate.console.users import Users

    call(client, Users(engine(client)).create, name, password, role)


def login(client: TestClient, username: str = "", password: str = MASTER, prefix: str = "/ui") -> str:
    """Log in; return the CSRF token of the new session (read from a page, as a browser would)."""
    r = client.post(f"{prefix}/login", data={"username": username, "password": password}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client, prefix)


def csrf_of(client: TestClient, prefix: str = "/ui") -> str:
    page = client.get(f"{prefix}/keys")
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match, page.text
    return match.group(1)


def create_key(client: TestClient, csrf: str, name: str = "test key", **fields: str) -> tuple[str, str, str]:
    """Create a key through the console: (key id, plaintext, the create answer's HTML)."""
    r = client.post("/ui/keys", data={"csrf": csrf, "name": name, **fields})
    assert r.status_code == 200, r.text
    token = re.search(r'id="secret">([^<]+)<', r.text)
    key_id = re.search(r'href="/ui/keys/(key_[0-9a-f]+)" id="done"', r.text)
    assert token and key_id, r.text
    return key_id.group(1), token.group(1), r.text


def walk_pages(client: TestClient, url: str) -> list[str]:
    """Every page of a keyset-paged list, following its `id="next"` link; each must answer 200."""
    pages: list[str] = []
    next_url: str | None = url
    while next_url:
        r = client.get(next_url)
        assert r.status_code == 200, (next_url, r.text)
        pages.append(r.text)
        nxt = re.search(r'id="next" href="([^"]+)"', r.text)
        next_url = nxt.group(1).replace("&amp;", "&") if nxt else None
        assert len(pages) <= 1000, "the pages do not end"
    return pages
