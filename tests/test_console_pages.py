"""Console pages over HTTP (no browser): headers, escaping, the one-time key, pagination, figures, bad input."""

from __future__ import annotations

import csv
import io
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from lockgate.auth.keys import KeyRepository
from tests.console_support import MASTER, call, console_client, create_key, login, walk_pages
from tests.dbs import db_url  # noqa: F401

ADMIN = {"authorization": f"Bearer {MASTER}"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class _Inline(HTMLParser):
    """Finds what the CSP would refuse: inline scripts, event-handler attributes, style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {k for k, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{tag}[{k}]" for k in names if k.startswith("on") or k == "style" or k.startswith("hx-on")]


def inline_parts(html: str) -> list[str]:
    parser = _Inline()
    parser.feed(html)
    return parser.found


def chat(client: Any, token: str, n: int = 1, model: str = "mock-gpt") -> list[str]:
    ids = []
    for i in range(n):
        r = client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {token}"},
            json={"model": model, "messages": [{"role": "user", "content": f"hello {i}"}]},
        )
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-request-id"])
    return ids


def wait_logged(client: Any, request_id: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if client.get(f"/ui/logs/{request_id}").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"{request_id} never reached the request log")


def test_headers_on_every_kind_of_answer(tmp_path: Path) -> None:
    with console_client(tmp_path) as c:
        login_page = c.get("/ui/login")
        csrf = login(c)
        key_id, _, created = create_key(c, csrf)
        pages = {
            "login": login_page,
            "overview": c.get("/ui/"),
            "keys": c.get("/ui/keys"),
            "key": c.get(f"/ui/keys/{key_id}"),
            "logs": c.get("/ui/logs"),
            "usage": c.get("/ui/usage"),
            "csv": c.get("/ui/usage.csv"),
            "deployments": c.get("/ui/deployments"),
            "audit": c.get("/ui/audit"),
            "not found": c.get("/ui/no/such/page"),
            "bad input": c.get("/ui/logs?min_latency_ms=fast"),
            "refused": c.post("/ui/keys", data={"name": "x"}),
        }
        for name, r in pages.items():
            assert r.headers["content-security-policy"] == CSP, name
            assert r.headers["x-content-type-options"] == "nosniff", name
            assert r.headers["referrer-policy"] == "no-referrer", name
            assert r.headers["x-frame-options"] == "DENY", name
            assert r.headers["cache-control"] == "no-store", name
            if r.headers["content-type"].startswith("text/html"):
                assert inline_parts(r.text) == [], name
        assert inline_parts(created) == []
        assert pages["not found"].status_code == 404 and pages["bad input"].status_code == 400
        assert "min_latency_ms" in pages["bad input"].text and "Traceback" not in pages["bad input"].text
        # Static files: cacheable for a year (their URLs carry a content hash), typed, with the same headers.
        for src in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', pages["overview"].text):
            r = c.get(src)
            assert r.status_code == 200, src
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable", src
            assert r.headers["content-type"].startswith(("text/javascript", "text/css")), src
            assert r.headers["x-content-type-options"] == "nosniff"
            assert c.get(src, headers={"if-none-match": r.headers["etag"]}).status_code == 304
        assert c.get("/ui/static/../console/web.py").status_code == 404
        assert c.get("/ui/static/templates/base.html").status_code == 404


def test_script_in_an_alias_team_or_error_is_escaped(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    with console_client(tmp_path) as c:
        csrf = login(c)
        key_id, _, created = create_key(c, csrf, name=evil, user=evil, models="<img src=x onerror=alert(1)>")
        pages = [created, c.get("/ui/keys").text, c.get(f"/ui/keys/{key_id}").text, c.get("/ui/audit").text]
        pages.append(c.get("/ui/keys", params={"q": evil}).text)
        pages.append(c.get("/ui/logs", params={"model": evil}).text)
        pages.append(c.get("/ui/logs", params={"status": evil}).text)  # an error message quoting the input
        for html in pages:
            assert evil not in html and "<img src=x" not in html
            assert inline_parts(html) == []
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1]


def test_the_plaintext_key_is_only_in_the_create_and_rotate_answers(tmp_path: Path) -> None:
    with console_client(tmp_path) as c:
        csrf = login(c)
        key_id, token, created = create_key(c, csrf, name="once")
        assert token.startswith("lg-") and token in created
        assert "You will not see it again" in created
        row = call(c, KeyRepository(c.app.state.gateway.store).get, key_id)  # type: ignore[attr-defined]
        shown = f"{row.key_prefix}…{token[-4:]}"
        seen = [
            c.get("/ui/keys").text,
            c.get(f"/ui/keys/{key_id}").text,
            c.get("/ui/audit").text,
            c.get("/admin/audit", headers=ADMIN).text,
        ]
        seen.append(c.get(f"/admin/keys/{key_id}", headers=ADMIN).text)
        for text in seen:
            assert token not in text
        assert shown in seen[0] and shown in seen[1]
        # Rotate: the new secret once, the old one refused by the gateway, the new one accepted.
        r = c.post(f"/ui/keys/{key_id}/rotate", data={"csrf": csrf})
        new = re.search(r'id="secret">([^<]+)<', r.text)
        assert r.status_code == 200 and new and new.group(1) != token
        assert (
            c.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {token}"},
                json={"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]},
            ).status_code
            == 401
        )
        chat(c, new.group(1))
        for text in (c.get("/ui/keys").text, c.get(f"/ui/keys/{key_id}").text, c.get("/ui/audit").text):
            assert new.group(1) not in text
        # Revoke: the gateway refuses the key at once.
        assert c.post(f"/ui/keys/{key_id}/revoke", data={"csrf": csrf}).status_code == 200
        r = c.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {new.group(1)}"},
            json={"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_keyset_pagination_and_its_bounds(tmp_path: Path, db_url: str) -> None:
    with console_client(tmp_path, db_url=db_url) as c:
        repo = KeyRepository(c.app.state.gateway.store)  # type: ignore[attr-defined]
        for i in range(120):
            call(c, repo.create, name=f"bulk-{i:03d}", team="pager" if i % 2 else None)
        login(c)
        seen: list[str] = []
        pages = walk_pages(c, "/ui/keys")
        for text in pages:
            ids = re.findall(r'href="/ui/keys/(key_[0-9a-f]+)" class="key-name"', text)
            assert len(ids) <= 50
            seen += ids
        assert len(pages) == 3 and len(seen) == 120 and len(set(seen)) == 120
        names = re.findall(r'class="key-name">(bulk-\d+)<', c.get("/ui/keys").text)
        assert names[0] == "bulk-119" and names[-1] == "bulk-070"  # newest first
        assert len(re.findall(r'class="key-name"', c.get("/ui/keys?team=pager").text)) == 50
        assert len(re.findall(r'class="key-name"', c.get("/ui/keys?q=bulk-11").text)) == 10
        assert re.findall(r'class="key-name">([^<]+)<', c.get("/ui/keys?q=bulk-007").text) == ["bulk-007"]
        assert "No keys match" in c.get("/ui/keys?q=100%25").text  # LIKE wildcards are text
        for bad in (
            "/ui/keys?after=garbage",
            "/ui/keys?after=2026-01-01T00:00:00",
            "/ui/keys?status=sideways",
            "/ui/logs?after=x~",
            "/ui/audit?before=-1",
        ):
            r = c.get(bad)
            assert r.status_code == 400, bad
            assert "Invalid input" in r.text


def test_request_log_filters_and_detail(tmp_path: Path, db_url: str) -> None:
    with console_client(tmp_path, db_url=db_url) as c:
        csrf = login(c)
        key_a, token_a, _ = create_key(c, csrf, name="a", team="red")
        key_b, token_b, _ = create_key(c, csrf, name="b")
        ids_a = chat(c, token_a, 3)
        ids_b = chat(c, token_b, 2)
        bad = c.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {token_b}"},
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
        )
        assert bad.status_code == 404
        wait_logged(c, ids_b[-1])
        wait_logged(c, bad.headers["x-request-id"])

        def listed(params: dict[str, str]) -> list[str]:
            html = c.get("/ui/logs", params=params).text
            return re.findall(r'href="/ui/logs/([^"]+)" class="request-link"', html)

        assert len(listed({})) == 6
        assert len(listed({"key": key_a})) == 3 and len(listed({"team": "red"})) == 3
        assert len(listed({"key": key_b, "status": "ok"})) == 2
        assert len(listed({"status": "error"})) == 1 and len(listed({"status": "404"})) == 1
        assert len(listed({"request_id": ids_a[0]})) == 1 and len(listed({"deployment": "mock-a"})) == 5
        assert len(listed({"streamed": "yes"})) == 0 and len(listed({"min_latency_ms": "100000"})) == 0
        detail = c.get(f"/ui/logs/{ids_a[0]}")
        assert detail.status_code == 200 and key_a in detail.text and "mock-a" in detail.text
        assert "hello 0" not in detail.text  # prompts are not stored, so never shown
        assert c.get("/ui/logs/req_does_not_exist").status_code == 404


def test_usage_page_and_csv_equal_admin_usage(tmp_path: Path, db_url: str) -> None:
    with console_client(tmp_path, db_url=db_url) as c:
        csrf = login(c)
        key_a, token_a, _ = create_key(c, csrf, name="a", team="red")
        key_b, token_b, _ = create_key(c, csrf, name="b", team="blue")
        chat(c, token_a, 4)
        last = chat(c, token_b, 3)[-1]
        wait_logged(c, last)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the roll-ups are written with the records
            if sum(r["requests"] for r in c.get("/admin/usage", headers=ADMIN).json()["data"]) == 7:
                break
            time.sleep(0.05)
        # Near budget: a key whose spend this period is at 80 % of its budget or more.
        spent = c.get("/admin/usage", params={"group_by": "key"}, headers=ADMIN).json()["data"]
        cost_a = next(r["cost_usd"] for r in spent if r["key_id"] == key_a)
        assert cost_a > 0
        c.patch(f"/admin/keys/{key_a}", headers=ADMIN, json={"max_budget_usd": cost_a / 0.9, "budget_period": "monthly"})
        c.patch(f"/admin/keys/{key_b}", headers=ADMIN, json={"max_budget_usd": 1000.0, "budget_period": "daily"})
        near = c.get("/ui/keys", params={"status": "near_budget"}).text
        assert re.findall(r'href="/ui/keys/(key_[0-9a-f]+)" class="key-name"', near) == [key_a]
        for group_by in ("key", "team", "model", "day"):
            api = c.get("/admin/usage", params={"group_by": group_by}, headers=ADMIN).json()["data"]
            r = c.get("/ui/usage.csv", params={"group_by": group_by})
            assert r.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(r.text)))
            assert len(rows) == len(api) and sum(int(r["requests"]) for r in rows) == 7
            field = {"key": "key_id"}.get(group_by, group_by)
            for got, want in zip(rows, api):
                assert got[field] == (want[field] or "")
                for name in ("requests", "prompt_tokens", "completion_tokens", "errors", "cost_unknown_requests"):
                    assert int(got[name]) == want[name]
                assert float(got["cost_usd"]) == want["cost_usd"]
            page = c.get("/ui/usage", params={"group_by": group_by}).text
            for want in api:
                assert f"<td>{want['requests']:,}</td>" in page
        assert c.get("/ui/usage?group_by=nonsense").status_code == 400
        assert c.get("/ui/usage?start=2026-12-10&end=2026-12-01").status_code == 400
        overview = c.get("/ui/").text
        assert overview.count(">7 requests<") == 3  # today, 7 days, 30 days
        tops = re.findall(r'href="/ui/logs\?key=(key_[0-9a-f]+)"', overview)
        assert len(tops) == 2
        series = c.get("/ui/overview.json").json()
        assert len(series["x"]) == 30 and sum(series["requests"]) == 7


def test_deployments_and_teams_and_audit_of_the_json_api(tmp_path: Path) -> None:
    with console_client(tmp_path) as c:
        csrf = login(c)
        r = c.post("/admin/teams", headers=ADMIN, json={"id": "blue", "max_budget_usd": 5})
        assert r.status_code == 201
        c.post("/admin/keys", headers=ADMIN, json={"name": "via-api", "team": "blue"})
        page = c.get("/ui/teams/blue").text
        assert "via-api" in page and "$5.0000 / total" in page
        r = c.post(
            "/ui/teams/blue",
            data={"csrf": csrf, "max_budget_usd": "7", "budget_period": "monthly", "rpm": "30"},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert c.get("/admin/teams/blue", headers=ADMIN).json()["rpm"] == 30
        deployments = c.get("/ui/deployments").text
        assert "mock-a" in deployments and "healthy" in deployments
        entries = c.get("/admin/audit", headers=ADMIN).json()["data"]
        by_action = {(e["action"], e["via"]) for e in entries}
        assert {("team.create", "api"), ("key.create", "api"), ("team.update", "console"), ("login", "console")} <= by_action
        update = next(e for e in entries if e["action"] == "team.update")
        assert update["before"]["rpm"] is None and update["after"]["rpm"] == 30 and update["actor"] == "master"
        assert all("key_hash" not in (e["after"] or {}) for e in entries)
        assert c.get("/admin/audit").status_code == 401
        older = c.get("/admin/audit", params={"limit": 1}, headers=ADMIN).json()
        assert len(older["data"]) == 1 and older["next_before"] == older["data"][0]["id"]
        assert c.get("/admin/audit", params={"limit": 0}, headers=ADMIN).status_code == 400


def test_the_cli_is_audited(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    import yaml

    cfg = tmp_path / "cli.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "models": [{"name": "m", "deployments": [{"provider": "mock", "model": "m"}]}],
                "database": {"url": f"sqlite:///{tmp_path}/console.db"},
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    def run(*a: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "lockgate", *a, "--config", str(cfg)]
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=60)

    assert run("keys", "create", "--name", "from-cli").returncode == 0
    created = run("admin", "create-user", "vera", "--role", "viewer", "--password-stdin", stdin="viewer-password-1\n")
    assert created.returncode == 0, created.stderr
    assert run("admin", "create-user", "bob", "--password-stdin", stdin="short\n").returncode == 2
    with console_client(tmp_path) as c:
        entries = c.get("/admin/audit", headers=ADMIN).json()["data"]
        assert [(e["action"], e["via"], e["actor"]) for e in entries][:2] == [
            ("user.create", "cli", "cli"),
            ("key.create", "cli", "cli"),
        ]
        login(c, "vera", "viewer-password-1")
        assert "from-cli" in c.get("/ui/keys").text
