"""The OpenAPI spec: valid 3.1, served as JSON and YAML, the same as docs/openapi.yaml, documenting
every route's successes, errors (the one Error schema, never a 422), security and headers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_spec_validator import validate

from tests.docs_support import mock_gateway
from tests.harness import GatewayProcess

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "openapi.yaml"
REGENERATE = "lockgate openapi > docs/openapi.yaml"
PUBLIC_PREFIXES = ("/v1/", "/admin/", "/health/", "/metrics")


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    yield from mock_gateway(tmp_path_factory.mktemp("openapi"))


@pytest.fixture(scope="module")
def spec(gateway: GatewayProcess) -> dict[str, Any]:
    got: dict[str, Any] = httpx.get(gateway.base_url + "/openapi.json").json()
    return got


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_the_served_spec_is_valid_openapi_31(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_yaml_and_json_are_the_same_document(gateway: GatewayProcess, spec: dict[str, Any]) -> None:
    resp = httpx.get(gateway.base_url + "/openapi.yaml")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(resp.text) == spec


def test_committed_copy_equals_the_served_spec(gateway: GatewayProcess) -> None:
    served = httpx.get(gateway.base_url + "/openapi.yaml").text
    assert COMMITTED.exists(), f"docs/openapi.yaml is missing; make it with: {REGENERATE}"
    assert COMMITTED.read_text() == served, f"docs/openapi.yaml is out of date; regenerate it with: {REGENERATE}"


def test_the_cli_prints_the_same_spec(spec: dict[str, Any]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lockgate", "openapi", "--json"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    import json

    assert json.loads(out.stdout) == spec


def test_every_public_route_is_documented(gateway: GatewayProcess, spec: dict[str, Any]) -> None:
    import lockgate.app as app_module
    from lockgate.config import resolve_config

    app = app_module.create_app(resolve_config(None), configure_logs=False)
    served = set()

    def walk(routes: list[Any]) -> Iterator[Any]:
        for route in routes:
            inner = getattr(route, "original_router", None)  # an included router (no prefix of its own here)
            yield from walk(inner.routes) if inner is not None else [route]

    for route in walk(app.routes):
        path = getattr(route, "path", "").replace(":path}", "}")
        for method in getattr(route, "methods", None) or ():
            if path.startswith(PUBLIC_PREFIXES) and method != "HEAD":
                served.add((path, method.lower()))
    documented = {(p, m) for p, m, _ in _operations(spec)}
    assert served == documented
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/responses", "/admin/keys", "/health/ready", "/metrics"):
        assert path in spec["paths"]


def test_no_422_and_every_error_is_the_shared_error_schema(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, op in _operations(spec):
        assert "422" not in op["responses"], (method, path)
        for status, response in op["responses"].items():
            if int(status) < 400 or path == "/health/ready":
                continue
            schema = response["content"]["application/json"]["schema"]["$ref"]
            want = "AnthropicError" if path.startswith("/v1/messages") else "Error"
            assert schema == f"#/components/schemas/{want}", (method, path, status)
    error = spec["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"message", "type", "param", "code"}


def test_security_admin_routes_and_headers(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer" and "lg-" in schemes["bearer"]["description"]
    assert "JWT" in schemes["bearer"]["description"]
    for path, method, op in _operations(spec):
        if path.startswith("/admin/"):
            assert op["security"] == [{"adminBearer": []}], (method, path)
        elif path.startswith("/v1/"):
            assert {"bearer": []} in op["security"], (method, path)
            assert "401" in op["responses"] and "429" in op["responses"]
        else:
            assert "security" not in op, (method, path)
        for response in op["responses"].values():
            assert response["headers"]["x-request-id"] == {"$ref": "#/components/headers/x-request-id"}
    chat = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    for header in ("x-lockgate-deployment", "x-lockgate-attempts", "x-ratelimit-remaining-requests"):
        assert header in chat["200"]["headers"]
    assert "retry-after" in chat["429"]["headers"] and "retry-after" in chat["503"]["headers"]


def test_bodies_streams_and_examples(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["ChatRequest"]["additionalProperties"] is True  # unknown fields pass through
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert "passed to the upstream untouched" in chat["description"]
    ok = chat["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatCompletion"}
    stream = ok["text/event-stream"]
    assert "data: [DONE]" in stream["schema"]["description"] and stream["example"].endswith("data: [DONE]\n\n")
    assert "ChatCompletionChunk" in schemas
    for path, method, op in _operations(spec):
        if "requestBody" in op:
            assert op["requestBody"]["content"]["application/json"].get("example"), (method, path)
        for status, response in op["responses"].items():
            for media, content in response.get("content", {}).items():
                assert content.get("example") is not None, (method, path, status, media)


def test_a_real_answer_matches_its_example_shape(gateway: GatewayProcess) -> None:
    from lockgate.api import spec_examples as ex
    from tests.harness import MASTER_KEY

    resp = httpx.post(gateway.url + "/chat/completions", json=ex.CHAT_REQUEST, headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert resp.status_code == 200
    assert set(ex.CHAT_RESPONSE) <= set(resp.json()) | {"system_fingerprint"}
    assert resp.headers["x-lockgate-deployment"] and resp.headers["x-request-id"].startswith("req_")


def test_a_wrong_method_on_a_fast_path_is_405(gateway: GatewayProcess) -> None:
    resp = httpx.get(gateway.url + "/chat/completions")
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"
