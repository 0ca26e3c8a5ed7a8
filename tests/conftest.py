from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import UPSTREAM_KEY, FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, free_port


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The shared fake OpenAI upstream, reset for each test."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture(scope="module")
def fake_anthropic_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """A fake Anthropic upstream for the module, reset for each test."""
    fake_anthropic_server.reset()
    yield fake_anthropic_server
    fake_anthropic_server.reset()


def openai_deployment(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": "upstream-model", "api_base": fake.url, "api_key": UPSTREAM_KEY, **extra}


def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    return free_port()


def basic_config(fake: FakeOpenAI, **top: Any) -> dict[str, Any]:
    """Public models in front of the fake (`gpt-test`, a fast-timeout `gpt-slow`, an unreachable `gpt-dead`) and mocks."""
    return {
        "auth": {"master_key": MASTER_KEY},
        "server": {"max_body_bytes": 64 * 1024},
        "router": {"max_attempts": 1},
        "models": [
            {"name": "gpt-test", "deployments": [openai_deployment(fake, first_byte_timeout_s=3)]},
            {"name": "gpt-slow", "deployments": [openai_deployment(fake, first_byte_timeout_s=0.5, timeout_s=0.5)]},
            {"name": "gpt-dead", "deployments": [openai_deployment(fake, api_base=f"http://127.0.0.1:{closed_port()}/v1")]},
            {"name": "mock-gpt", "deployments": [{"provider": "mock", "model": "mock-gpt"}]},
            {"name": "mock-embedding", "deployments": [{"provider": "mock", "model": "mock-embedding"}]},
        ],
        **top,
    }


@pytest.fixture(scope="session")
def gateway_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start `lockgate serve` processes for one test; all are stopped afterwards."""
    started: list[GatewayProcess] = []

    def start(
        config: dict[str, Any], env: dict[str, str] | None = None, workers: int = 1, wait_for: str = "/health/ready"
    ) -> GatewayProcess:
        gw = GatewayProcess(config, tmp_path, env=env, workers=workers).start(wait_for=wait_for)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture(scope="module")
def shared_gateway(fake_openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for a whole test module, in front of the shared fake (basic_config)."""
    gw = GatewayProcess(basic_config(fake_openai_server), tmp_path_factory.mktemp("gw")).start()
    yield gw
    gw.stop()


@pytest.fixture
def client(shared_gateway: GatewayProcess, fake_openai: FakeOpenAI) -> openai.OpenAI:
    return openai.OpenAI(base_url=shared_gateway.url, api_key=MASTER_KEY, max_retries=0, timeout=20)
