"""A real headless browser for tests: Playwright driving Debian's Chromium (never `playwright install`).

`.ci/run` installs the `chromium` package; on a laptop without it the browser tests skip with a message,
under CI=true they fail. Use the `browser_page` fixture, or `chromium()` in a `with` block:

    from tests.browser import browser_page  # noqa: F401

A page collects its console errors and failed requests in `page.problems` (a list of strings) so a test
can assert none happened.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.harness import missing

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    explicit = os.environ.get("LOCKGATE_CHROMIUM")
    if explicit:
        return explicit
    for path in CHROMIUM_CANDIDATES:
        if os.path.exists(path):
            return path
    return shutil.which("chromium")


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (playwright Browser); skipped/failed per `missing` when absent."""
    path = chromium_path()
    if path is None:
        missing("Chromium is not installed", "apt-get install chromium (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extras pin it
        missing("playwright is not installed", "make test installs the test extras")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A fresh page whose console errors and failed requests are gathered in `page.problems`."""
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url} {req.failure}"))
        page.problems = problems  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            context.close()
