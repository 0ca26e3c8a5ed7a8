"""Every answer carries the security headers and no server banner (docs/limits.md#security-headers), over HTTP
against a real `lockgate serve`: inference, admin, errors, 404s, framework errors and streams alike."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.harness import MASTER_KEY, GatewayProcess

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}


def _config(**server: object) -> dict[str, object]:
    return {
        "auth": {"master_key": MASTER_KEY},
        "models": [{"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt"}]}],
        "server": server,
    }


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(_config(), tmp_path_factory.mktemp("headers")).start()
    yield gateway
    gateway.stop()


def _requests(base: str) -> list[tuple[str, httpx.Request]]:
    def req(method: str, path: str, **kw: object) -> httpx.Request:
        return httpx.Request(method, base + path, **kw)  # type: ignore[arg-type]

    return [
        ("chat", req("POST", "/v1/chat/completions", headers=AUTH, json=CHAT)),
        ("chat 401", req("POST", "/v1/chat/completions", json=CHAT)),
        ("chat 400", req("POST", "/v1/chat/completions", headers=AUTH, content=b"{not json")),
        ("chat unknown model", req("POST", "/v1/chat/completions", headers=AUTH, json={**CHAT, "model": "nope"})),
        ("messages 401", req("POST", "/v1/messages", json={"model": "mock-gpt", "max_tokens": 5, "messages": []})),
        ("embeddings", req("POST", "/v1/embeddings", headers=AUTH, json={"model": "mock-gpt", "input": "x"})),
        ("models", req("GET", "/v1/models", headers=AUTH)),
        ("admin keys", req("GET", "/admin/keys", headers=AUTH)),
        ("admin key created", req("POST", "/admin/keys", headers=AUTH, json={"name": "headers-test"})),
        ("admin 401", req("GET", "/admin/keys")),
        ("404", req("GET", "/no/such/route")),
        ("405", req("GET", "/v1/chat/completions", headers=AUTH)),
        ("health", req("GET", "/health/live")),
        ("metrics", req("GET", "/metrics")),
    ]


@pytest.mark.parametrize("name", [name for name, _ in _requests("")])
def test_every_answer_has_the_security_headers_and_no_banner(gw: GatewayProcess, name: str) -> None:
    request = dict(_requests(gw.base_url))[name]
    with httpx.Client() as http:
        r = http.send(request)
    assert r.status_code < 500, (r.status_code, r.text)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers.get_list("cache-control") == ["no-store"]  # one value, never a second one
    assert "server" not in r.headers
    assert "strict-transport-security" not in r.headers  # not configured
    assert r.headers["x-request-id"].startswith("req_")


def test_a_stream_says_no_store_once(gw: GatewayProcess) -> None:
    with httpx.stream("POST", gw.url + "/chat/completions", headers=AUTH, json={**CHAT, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get_list("cache-control") == ["no-store"]
        assert r.headers["x-content-type-options"] == "nosniff" and "server" not in r.headers
        assert "[DONE]" in r.read().decode()


def test_hsts_when_configured(tmp_path: object) -> None:
    from pathlib import Path

    gateway = GatewayProcess(_config(hsts_max_age_s=31536000, hsts_include_subdomains=True), Path(str(tmp_path))).start()
    try:
        for path in ("/v1/models", "/no/such/route", "/health/live"):
            r = httpx.get(gateway.base_url + path, headers=AUTH)
            assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains", path
    finally:
        gateway.stop()
