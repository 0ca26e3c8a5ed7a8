"""CORS (server.cors, docs/limits.md#cors): real preflights over HTTP against `lockgate serve`, and a page on
another loopback origin calling the gateway from headless Chromium with `fetch`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiohttp import web

from lockgate.config import ConfigError, parse_config
from tests.browser import browser_page  # noqa: F401
from tests.fakes.server import ThreadedServer
from tests.harness import MASTER_KEY, ROOT, GatewayProcess

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
MODELS = [
    {
        "name": "mock-gpt",
        "deployments": [{"provider": "mock", "model": "mock-gpt", "mock_tokens_per_s": 40}],
        "limits": {"rpm": 10_000},  # its answers carry x-ratelimit-* headers
    }
]


class Page:
    """A page served from its own 127.0.0.1 port (its own origin) that calls the gateway with fetch."""

    def __init__(self) -> None:
        self.gateway = ""
        self._server = ThreadedServer(lambda app: app.router.add_get("/", self._index), "cors-page")
        self.port = self._server.start()
        self.origin = f"http://127.0.0.1:{self.port}"

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE.replace("GATEWAY", self.gateway).replace("KEY", MASTER_KEY), content_type="text/html")

    def stop(self) -> None:
        self._server.stop()


PAGE = """<!doctype html><meta charset=utf-8><title>cors</title><link rel=icon href="data:,"><script>
async function run() {
  const r = await fetch("GATEWAY/v1/chat/completions", {
    method: "POST",
    headers: {"Authorization": "Bearer KEY", "Content-Type": "application/json"},
    body: JSON.stringify({model: "mock-gpt", stream: true, messages: [{role: "user", content: "one two three four"}]}),
  });
  const reader = r.body.getReader(), decoder = new TextDecoder();
  let text = "", reads = 0;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    reads += 1;
    text += decoder.decode(value, {stream: true});
  }
  const content = text.split("\\n").filter(l => l.startsWith("data: {"))
    .map(l => JSON.parse(l.slice(6))).map(c => (c.choices[0] || {delta: {}}).delta.content || "").join("");
  return {status: r.status, content, reads, done: text.includes("data: [DONE]"),
          requestId: r.headers.get("x-request-id"), deployment: r.headers.get("x-lockgate-deployment"),
          limit: r.headers.get("x-ratelimit-limit-requests"), hidden: r.headers.get("x-content-type-options")};
}
</script><p>cors page</p>"""


@pytest.fixture(scope="module")
def pages() -> Iterator[tuple[Page, Page]]:
    allowed, other = Page(), Page()
    yield allowed, other
    allowed.stop()
    other.stop()


@pytest.fixture(scope="module")
def gw(pages: tuple[Page, Page], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    allowed, other = pages
    cors = {
        "allow_origins": [allowed.origin, "https://*.example.com"],
        "allow_origin_regex": r"https://pr-[0-9]+\.preview\.dev",
        "allow_headers": ["authorization", "content-type", "x-api-key", "anthropic-version", "x-stainless-*"],
        "max_age_s": 321,
        "allow_credentials": True,
    }
    config = {"auth": {"master_key": MASTER_KEY}, "models": MODELS, "server": {"cors": cors}}
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("cors")).start()
    allowed.gateway = other.gateway = gateway.base_url
    yield gateway
    gateway.stop()


def preflight(
    gw: GatewayProcess,
    origin: str,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    headers: str = "authorization, content-type",
) -> httpx.Response:
    ask = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        ask["Access-Control-Request-Headers"] = headers
    return httpx.options(gw.base_url + path, headers=ask)


def cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def refusals(gw: GatewayProcess, reason: str) -> float:
    for line in httpx.get(gw.base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(f'lockgate_http_refused_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- preflights ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages", "/v1/responses", "/v1/models", "/admin/keys"],
)
def test_a_preflight_from_an_allowed_origin_is_answered(gw: GatewayProcess, pages: tuple[Page, Page], path: str) -> None:
    origin = pages[0].origin
    r = preflight(gw, origin, path, headers="Authorization, Content-Type, X-Stainless-OS")
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == origin
    assert set(r.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST", "DELETE", "PATCH"}
    assert r.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
    assert r.headers["access-control-max-age"] == "321"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(
    "origin",
    ["https://a.example.com", "https://deep.a.example.com", "https://pr-42.preview.dev", "HTTPS://A.EXAMPLE.COM"],
)
def test_patterns_allow_their_origins(gw: GatewayProcess, origin: str) -> None:
    r = preflight(gw, origin)
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com",  # the wildcard needs a subdomain
        "https://evilexample.com",
        "https://a.example.com.evil.net",
        "http://a.example.com",  # another scheme
        "https://a.example.com:8443",  # another port
        "https://pr-x.preview.dev",
        "https://pr-1.preview.dev.evil.net",  # the regex must match whole
        "http://127.0.0.1:1",
        "null",
    ],
)
def test_a_preflight_from_another_origin_is_refused_without_cors_headers(gw: GatewayProcess, origin: str) -> None:
    before = refusals(gw, "cors_origin")
    r = preflight(gw, origin)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "cors_not_allowed" and r.json()["error"]["type"] == "invalid_request_error"
    assert cors_headers(r) == {}
    assert refusals(gw, "cors_origin") == before + 1


def test_a_refused_preflight_on_messages_is_in_anthropics_shape(gw: GatewayProcess) -> None:
    r = preflight(gw, "https://evil.test", "/v1/messages")
    assert r.status_code == 403 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "permission_error" and cors_headers(r) == {}


def test_a_method_or_header_not_allowed_is_refused(gw: GatewayProcess, pages: tuple[Page, Page]) -> None:
    origin = pages[0].origin
    r = preflight(gw, origin, method="PUT")
    assert r.status_code == 403 and "PUT" in r.json()["error"]["message"] and cors_headers(r) == {}
    r = preflight(gw, origin, headers="authorization, x-evil")
    assert r.status_code == 403 and "x-evil" in r.json()["error"]["message"] and cors_headers(r) == {}


# --- actual requests -------------------------------------------------------------------------------


def test_an_allowed_origins_answer_exposes_the_gateways_headers(gw: GatewayProcess, pages: tuple[Page, Page]) -> None:
    origin = pages[0].origin
    r = httpx.post(gw.url + "/chat/completions", headers={**AUTH, "Origin": origin}, json=CHAT)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"
    exposed = set(r.headers["access-control-expose-headers"].split(", "))
    assert {"x-request-id", "retry-after", "x-lockgate-deployment", "x-lockgate-attempts"} <= exposed
    assert {"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests"} <= exposed
    assert "x-content-type-options" not in exposed  # only what was asked for


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models", "/no/such/route"])
def test_another_origins_answer_has_no_cors_header(gw: GatewayProcess, path: str) -> None:
    method = "POST" if path == "/v1/chat/completions" else "GET"
    r = httpx.request(method, gw.base_url + path, headers={**AUTH, "Origin": "https://evil.test"}, json=CHAT)
    assert cors_headers(r) == {}, r.headers
    assert r.headers["x-content-type-options"] == "nosniff"


def test_an_error_answer_to_an_allowed_origin_is_readable(gw: GatewayProcess, pages: tuple[Page, Page]) -> None:
    # A browser app must be able to read a 401's body and request id.
    r = httpx.post(gw.url + "/chat/completions", headers={"Origin": pages[0].origin}, json=CHAT)
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == pages[0].origin
    assert "x-request-id" in r.headers["access-control-expose-headers"]


# --- configuration ---------------------------------------------------------------------------------


def _config(cors: dict[str, Any] | None) -> dict[str, Any]:
    server = {"cors": cors} if cors is not None else {}
    return {"auth": {"master_key": MASTER_KEY}, "models": MODELS, "server": server}


def test_credentials_with_the_wildcard_origin_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="allow_credentials cannot be combined with the wildcard origin"):
        parse_config(_config({"allow_origins": ["*"], "allow_credentials": True}))
    with pytest.raises(ConfigError, match="allow_origin_regex that matches any origin"):
        parse_config(
            _config({"allow_origins": ["https://a.test"], "allow_origin_regex": "https://.*", "allow_credentials": True})
        )
    path = tmp_path / "lockgate.yaml"
    path.write_text(yaml.safe_dump(_config({"allow_origins": ["https://a.test", "*"], "allow_credentials": True})))
    out = subprocess.run([sys.executable, "-m", "lockgate", "check-config", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and "server.cors: Value error, allow_credentials cannot" in out.stderr, out.stderr


@pytest.mark.parametrize("origin", ["https://app.test/", "https://app.test/path", "app.test", "https://*", "https://a*.test"])
def test_what_is_not_an_origin_is_a_config_error(origin: str) -> None:
    with pytest.raises(ConfigError, match="is not an origin"):
        parse_config(_config({"allow_origins": [origin]}))


def test_the_wildcard_origin_answers_star_without_vary(tmp_path: Path) -> None:
    gateway = GatewayProcess(_config({"allow_origins": ["*"]}), tmp_path).start()
    try:
        r = preflight(gateway, "https://anyone.test")
        assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*" and "vary" not in r.headers
        assert "access-control-allow-credentials" not in r.headers
        r = httpx.get(gateway.url + "/models", headers={**AUTH, "Origin": "https://anyone.test"})
        assert r.headers["access-control-allow-origin"] == "*"
    finally:
        gateway.stop()


def test_cors_is_off_by_default(tmp_path: Path) -> None:
    gateway = GatewayProcess(_config(None), tmp_path).start()
    try:
        r = preflight(gateway, "https://app.test")
        assert r.status_code == 405 and cors_headers(r) == {}  # no route answers OPTIONS, as before
        r = httpx.post(gateway.url + "/chat/completions", headers={**AUTH, "Origin": "https://app.test"}, json=CHAT)
        assert r.status_code == 200 and cors_headers(r) == {}
    finally:
        gateway.stop()


# --- in a browser ----------------------------------------------------------------------------------


def test_a_page_on_an_allowed_origin_streams_a_chat_completion(
    gw: GatewayProcess, pages: tuple[Page, Page], browser_page: Any
) -> None:
    browser_page.goto(pages[0].origin + "/")
    result = browser_page.evaluate("run()")
    assert result["status"] == 200 and result["done"], result
    assert "one two three four" in result["content"], result
    assert result["reads"] > 1, result  # the stream arrived in parts, as it was produced
    assert result["requestId"].startswith("req_") and result["deployment"] == "mock/mock-gpt#0"
    assert result["limit"] == "10000"  # an exposed x-ratelimit-* header
    assert result["hidden"] is None  # not exposed: the browser hides it from the page
    # Chromium often reports a fetch whose body a script read to its end through a ReadableStream as
    # "net::ERR_ABORTED" (seen with the stream complete: status 200, `[DONE]`, the final 0-length chunk on
    # the wire); that one report is not a problem, any other is.
    benign = f"request failed: {gw.base_url}/v1/chat/completions net::ERR_ABORTED"
    assert [p for p in browser_page.problems if p != benign] == []


def test_a_page_on_another_origin_cannot_call_the_gateway(
    gw: GatewayProcess, pages: tuple[Page, Page], browser_page: Any
) -> None:
    browser_page.goto(pages[1].origin + "/")
    outcome = browser_page.evaluate("run().then(r => 'answered ' + r.status, e => 'failed: ' + e)")
    assert outcome == "failed: TypeError: Failed to fetch", outcome
    assert any("CORS" in p for p in browser_page.problems), browser_page.problems
