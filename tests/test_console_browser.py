"""The console in a real headless Chromium (tests/browser.py) against a real `lockgate serve` with the mock provider.

Any console error, failed request or CSP violation on a page fails the test. Screenshots of each page
are saved under the test's tmp dir (`screens/`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import chromium
from tests.harness import MASTER_KEY, ROOT, GatewayProcess

VIEWER_PW = "viewer-password-42"
# Chromium reports CSP refusals as console errors; this also catches them as events, whatever the message.
CSP_WATCH = "document.addEventListener('securitypolicyviolation', e => console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI))"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    config = {
        "auth": {"master_key": MASTER_KEY, "key_cache_ttl_s": 0},
        "database": {"url": f"sqlite:///{tmp_path}/console.db"},
        "usage": {"spool_dir": str(tmp_path / "spool"), "flush_interval_s": 0.05},
        "models": [
            {"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt", "id": "mock-a", "mock_latency_ms": 5}]}
        ],
    }
    gw = GatewayProcess(config, tmp_path)
    gw.config_path.write_text(__import__("yaml").safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockgate",
            "admin",
            "create-user",
            "vera",
            "--role",
            "viewer",
            "--password-stdin",
            "--config",
            str(gw.config_path),
        ],
        input=VIEWER_PW + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    gw.start()
    yield gw
    gw.stop()


def chat(gw: GatewayProcess, token: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/chat/completions",
        headers={"authorization": f"Bearer {token}"},
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def new_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # A request the test itself cut short by moving to another page (ERR_ABORTED) is not the console's fault.
    page.on(
        "requestfailed",
        lambda req: (
            problems.append(f"request failed: {req.url} {req.failure}") if "ERR_ABORTED" not in (req.failure or "") else None
        ),
    )
    page.problems = problems
    return page


def click(page: Any, selector: str) -> None:
    """Click something that navigates, and wait for the new page to load."""
    with page.expect_navigation():
        page.click(selector)


def test_console_in_a_browser(gateway: GatewayProcess, tmp_path: Path) -> None:
    gw = gateway
    shots = tmp_path / "screens"
    shots.mkdir()
    # Some traffic for the overview's chart and the request log.
    seed = httpx.post(
        f"{gw.base_url}/admin/keys", headers={"authorization": f"Bearer {MASTER_KEY}"}, json={"name": "seed", "team": "red"}
    )
    seed_key = seed.json()
    for _ in range(3):
        assert chat(gw, seed_key["key"]).status_code == 200

    with chromium() as browser:
        page = new_page(browser)
        ui = f"{gw.base_url}/ui"

        # Log in with the master key: back to the page first asked for.
        page.goto(f"{ui}/keys")
        assert page.url.startswith(f"{ui}/login?next=")
        page.fill("input[name=password]", MASTER_KEY)
        click(page, "#login")
        assert page.url == f"{ui}/keys", (page.url, page.problems)
        cookies = {c["name"]: c for c in page.context.cookies()}
        session = cookies["lockgate_session"]
        assert session["httpOnly"] is True and session["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # the session is out of JavaScript's reach
        assert MASTER_KEY not in page.content()

        # Overview: the chart is drawn by uPlot (a canvas), under the strict CSP.
        page.goto(f"{ui}/")
        page.wait_for_selector("#chart-spend[data-drawn=true] canvas")
        page.wait_for_selector("#chart-latency[data-drawn=true] canvas")
        page.screenshot(path=str(shots / "overview.png"), full_page=True)

        # Create a key: shown once; afterwards only its prefix and last four.
        page.goto(f"{ui}/keys")
        click(page, "#new-key")
        page.fill("input[name=name]", "browser key <b>bold</b>")
        page.fill("input[name=rpm]", "100")
        click(page, "#create")
        token = page.text_content("#secret") or ""
        assert token.startswith("lg-")
        page.screenshot(path=str(shots / "key-created.png"), full_page=True)
        assert chat(gw, token).status_code == 200
        click(page, "#done")
        page.reload()
        assert token not in page.content()
        assert f"…{token[-4:]}" in page.text_content(".facts") or ""
        page.goto(f"{ui}/keys")
        page.reload()
        html = page.content()
        assert token not in html and f"…{token[-4:]}" in html and "browser key &lt;b&gt;bold&lt;/b&gt;" in html
        page.screenshot(path=str(shots / "keys.png"), full_page=True)

        # Rotate, then revoke, each behind a confirmation; the gateway refuses the old secrets over HTTP.
        click(page, "text=browser key <b>bold</b>")
        click(page, "#rotate")
        click(page, "#confirm")
        rotated = page.text_content("#secret") or ""
        assert rotated.startswith("lg-") and rotated != token
        assert chat(gw, token).status_code == 401
        assert chat(gw, rotated).status_code == 200
        click(page, "#done")
        click(page, "#revoke")
        page.screenshot(path=str(shots / "confirm-revoke.png"))
        click(page, "#confirm")
        assert (page.text_content("#status") or "").strip() == "revoked"
        refused = chat(gw, rotated)
        assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]

        # Request log: filter (an htmx swap that updates the URL), then open a request.
        page.goto(f"{ui}/logs")
        page.fill("input[name=key]", seed_key["id"])
        page.click("#filter")
        page.wait_for_url(f"**/ui/logs?*key={seed_key['id']}*")
        page.wait_for_function("document.querySelectorAll('a.request-link').length === 3")
        page.screenshot(path=str(shots / "logs.png"), full_page=True)
        click(page, "a.request-link >> nth=0")
        page.wait_for_selector("#record")
        assert seed_key["id"] in (page.text_content("#record") or "")
        page.screenshot(path=str(shots / "log-detail.png"), full_page=True)

        # Users: an admin creates one with the form.
        page.goto(f"{ui}/users")
        page.fill("#new-user input[name=username]", "browser-user")
        page.fill("#new-user input[name=password]", "browser-user-password")
        page.select_option("#new-user select[name=role]", "viewer")
        click(page, "#create-user")
        page.wait_for_selector("#done")
        assert page.url.startswith(f"{ui}/users/browser-user") and page.text_content("#role") == "viewer"
        page.screenshot(path=str(shots / "user.png"), full_page=True)

        for name in ("usage", "teams", "deployments", "users", "audit"):
            page.goto(f"{ui}/{name}")
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        assert "key.revoke" in page.content()

        # Log out: the old cookie is refused by the server afterwards.
        click(page, "#logout")
        assert page.url == f"{ui}/login"
        old = httpx.get(f"{ui}/keys", cookies={"lockgate_session": session["value"]}, follow_redirects=False)
        assert old.status_code == 303 and "/ui/login" in old.headers["location"]
        assert page.problems == [], page.problems

        # A viewer sees everything and changes nothing: the server answers 403.
        viewer = new_page(browser)
        viewer.goto(f"{ui}/login")
        viewer.fill("input[name=username]", "vera")
        viewer.fill("input[name=password]", VIEWER_PW)
        click(viewer, "#login")
        assert viewer.url == f"{ui}/"
        viewer.goto(f"{ui}/keys")
        assert viewer.locator("#new-key").count() == 0
        assert viewer.goto(f"{ui}/keys/new").status == 403
        viewer.goto(f"{ui}/keys")
        status = viewer.evaluate(
            """async () => {
                const csrf = document.querySelector('input[name=csrf]').value;
                const r = await fetch('keys', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                                               body: new URLSearchParams({csrf, name: 'viewer key'})});
                return r.status;
            }"""
        )
        assert status == 403
        viewer.goto(f"{ui}/keys/{seed_key['id']}")
        assert viewer.locator("#revoke").count() == 0
        viewer.screenshot(path=str(shots / "viewer-key.png"), full_page=True)
        problems = [p for p in viewer.problems if "403" not in p]  # the two 403s asked for above
        assert problems == [], problems
        # The watch works: an inline script injected into the page is refused by the CSP and reported.
        viewer.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = 'window.x = 1'; document.body.append(s); }"
        )
        viewer.wait_for_timeout(200)
        assert viewer.evaluate("window.x") is None
        assert any("CSP violation: script-src" in p for p in viewer.problems), viewer.problems
    print(f"screenshots: {shots}")
