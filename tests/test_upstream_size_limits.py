"""An upstream answer bigger than max_response_bytes, or a stream longer than max_stream_bytes, is cut with a
clear error (docs/limits.md), through a real `lockgate serve` in front of the fake OpenAI upstream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import openai_deployment
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess

MSG = [{"role": "user", "content": "hi"}]
CAP = 1024 * 1024  # the capped deployment's max_response_bytes and max_stream_bytes


@pytest.fixture(scope="module")
def gw(fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    fake = fake_openai_server
    config = {
        "auth": {"master_key": MASTER_KEY},
        "router": {"max_attempts": 2, "backoff": {"base_s": 0, "max_s": 0}},
        "models": [
            {
                "name": "capped",
                "deployments": [openai_deployment(fake, id="capped", max_response_bytes=CAP, max_stream_bytes=CAP)],
            },
            {"name": "roomy", "deployments": [openai_deployment(fake, id="roomy")]},
        ],
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("sizes")).start()
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw: GatewayProcess, fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0, timeout=30)


def metric(gw: GatewayProcess, name: str, **labels: str) -> float:
    total = 0.0
    for line in httpx.get(gw.base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def assert_healthy_after(client: openai.OpenAI, gw: GatewayProcess, fake: FakeOpenAI) -> None:
    """The gateway serves the next request, and the cap did not count against the deployment."""
    fake.faults.clear()
    answer = client.chat.completions.create(model="capped", messages=MSG)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Hello from the fake upstream."
    ready = httpx.get(gw.base_url + "/health/ready", timeout=5).json()
    capped = [d for m in ready["models"] for d in m["deployments"] if d["id"] == "capped"][0]
    assert capped["state"] == "healthy" and capped.get("failures", 0) == 0, capped


@pytest.mark.parametrize(
    "fault",
    [{"huge": 3_000_000}, {"huge": 3_000_000, "chunked": True}, {"huge": 3_000_000, "gzip": True}],
    ids=["content-length", "chunked", "gzip"],
)
def test_a_non_streamed_answer_past_max_response_bytes_is_a_502(
    client: openai.OpenAI, gw: GatewayProcess, fake_openai: FakeOpenAI, fault: dict[str, Any]
) -> None:
    before = metric(gw, "lockgate_requests_total", error_type="provider_response_too_large")
    fake_openai.faults.append(fault)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="capped", messages=MSG)  # type: ignore[arg-type]
    err = caught.value
    assert err.status_code == 502
    assert isinstance(err.body, dict) and err.body["code"] == "upstream_response_too_large", err.body
    assert err.body["type"] == "server_error"
    assert f"max_response_bytes ({CAP} bytes)" in err.body["message"]
    assert len(fake_openai.requests) == 1  # the operator's cap: not retried on the same deployment
    line = gw.access_line(err.response.headers["x-request-id"])
    assert line["status"] == 502 and line["error_type"] == "provider_response_too_large"
    assert metric(gw, "lockgate_requests_total", error_type="provider_response_too_large") == before + 1
    assert_healthy_after(client, gw, fake_openai)


@pytest.mark.parametrize("chunked", [False, True])
def test_an_answer_within_the_cap_passes_whole(client: openai.OpenAI, fake_openai: FakeOpenAI, chunked: bool) -> None:
    fake_openai.faults.append({"huge": 900_000, "chunked": chunked})
    answer = client.chat.completions.create(model="capped", messages=MSG)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "x" * 900_000


def test_a_stream_past_max_stream_bytes_ends_with_an_error_event(
    client: openai.OpenAI, gw: GatewayProcess, fake_openai: FakeOpenAI
) -> None:
    fake_openai.faults.append({"huge": 3_000_000})
    raw = client.chat.completions.with_raw_response.create(model="capped", messages=MSG, stream=True)  # type: ignore[arg-type]
    assert raw.http_response.status_code == 200
    received = 0
    with pytest.raises(openai.APIError) as caught:
        for chunk in raw.parse():
            for choice in chunk.choices:
                received += len(choice.delta.content or "")
    assert "max_stream_bytes" in caught.value.message, caught.value.message
    assert 0 < received < CAP  # what arrived before the cap was relayed, not a byte past it
    line = gw.access_line(raw.headers["x-request-id"])
    assert line["error_type"] == "provider_response_too_large" and line["partial"] is True
    assert_healthy_after(client, gw, fake_openai)


def test_one_long_stream_event_under_the_cap_is_relayed(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    # 300 kB in one SSE line: more than aiohttp's default line limit (128 KiB), within max_stream_bytes.
    fake_openai.faults.append({"huge": 300_000, "one_event": True})
    stream = client.chat.completions.create(model="roomy", messages=MSG, stream=True)  # type: ignore[arg-type]
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "x" * 300_000


def test_one_stream_event_past_the_cap_is_cut(client: openai.OpenAI, fake_openai: FakeOpenAI) -> None:
    fake_openai.faults.append({"huge": 2_000_000, "one_event": True})
    with pytest.raises(openai.APIError) as caught:
        stream = client.chat.completions.create(model="capped", messages=MSG, stream=True)  # type: ignore[arg-type]
        for _ in stream:
            pass
    assert "max_stream_bytes" in caught.value.message
