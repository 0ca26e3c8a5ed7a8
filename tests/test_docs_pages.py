"""/docs: Swagger UI from the package's own assets (no CDN), under a strict CSP, rendering every operation
in a real headless Chromium with no failed request and no console error."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import browser_page  # noqa: F401
from tests.docs_support import mock_gateway
from tests.harness import GatewayProcess

ASSETS = Path(__file__).resolve().parent.parent / "lockgate" / "api" / "docs_assets"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from mock_gateway(tmp_path_factory.mktemp("docs"))


def test_vendored_assets_match_their_recorded_sha256() -> None:
    record = (ASSETS / "VENDOR.md").read_text()
    sums = re.findall(r"^([0-9a-f]{64})  (\S+)$", record, re.M)
    assert len(sums) >= 5
    for digest, name in sums:
        assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == digest, name


def test_the_page_has_a_strict_csp_and_no_outside_url(gateway: GatewayProcess) -> None:
    resp = httpx.get(gateway.base_url + "/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert "http" not in resp.text  # every URL is the gateway's own (relative)
    asset = httpx.get(gateway.base_url + "/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
    assert httpx.get(gateway.base_url + "/docs/assets/VENDOR.md").status_code == 404  # only the listed files


def test_swagger_ui_renders_every_operation_offline(gateway: GatewayProcess, browser_page: Any) -> None:
    page = browser_page
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    spec = httpx.get(gateway.base_url + "/openapi.json").json()
    count = sum(len(item) for item in spec["paths"].values())
    page.goto(gateway.base_url + "/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    assert page.locator(".opblock").count() == count
    assert page.locator('[data-path="/v1/chat/completions"]').count() >= 1
    assert "Lockgate" in page.locator(".info .title").inner_text()
    page.wait_for_timeout(300)
    assert page.problems == []  # no failed request, no console error (a CSP violation is one)
    outside = [u for u in requested if not u.startswith(gateway.base_url)]
    assert outside == []
