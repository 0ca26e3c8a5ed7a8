"""Configured secrets never leave the gateway, whatever their shape (issue 11, item 8).

A real `lockgate serve` in front of the fake upstreams, which answer with a 401
(or a mid-stream error event) that repeats the key they received, whole and
masked. Neither form may reach the client's error body, the gateway's log,
/metrics or a PostHog event.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.posthog_capture import CaptureServer
from tests.harness import MASTER_KEY

# Keys of several shapes, none of which the old shape-based redaction recognised (but sk-proj).
KEYS = {
    "groq": "gsk_Q7wErTy9uIoP4aSdFgHjKlZx",  # Groq's shape
    "azure": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",  # Azure's: 32 hex characters, sent as an api-key header
    "proj": "sk-proj-Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5",
    "word": "correcthorsebatterystaple",
    "meta": "a.b*c+d?(e)[f]{g}|h^$\\z-9",  # regex metacharacters
}
ANTHROPIC_KEY = "antkey_ZXCVBNMasdfghjk7531"
POSTHOG_KEY = "phc_RedactionTestKey0123456789"


def _forms(key: str) -> list[str]:
    """The key and the visible parts of its masked echoes (the fakes show 7 or 8 leading characters)."""
    return [key, key[:7] + "***", key[:8] + "***"]


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    server = CaptureServer().start()
    yield server
    server.stop()


def _config(openai_fake: FakeOpenAI, anthropic_fake: FakeAnthropic, capture: CaptureServer) -> dict[str, Any]:
    def openai_model(name: str, key: str) -> dict[str, Any]:
        dep: dict[str, Any] = {"provider": "openai", "model": "upstream-model", "api_base": openai_fake.url}
        if name == "azure":
            dep["headers"] = {"api-key": key}
        else:
            dep["api_key"] = key
        return {"name": name, "deployments": [dep]}

    return {
        "auth": {"master_key": MASTER_KEY},
        "router": {"max_attempts": 1},
        # Collected at start-up though unused here (the memory back-end): a password in a Redis URL.
        "redis": {"url": "redis://:redis-pass-Hk39dLq@127.0.0.1:6379/0"},
        "posthog": {"api_key": POSTHOG_KEY, "host": capture.url, "flush_interval_s": 0.1, "flush_at": 1},
        "models": [
            *(openai_model(name, key) for name, key in KEYS.items()),
            {
                "name": "claude",
                "deployments": [
                    {"provider": "anthropic", "model": "claude-x", "api_base": anthropic_fake.url, "api_key": ANTHROPIC_KEY}
                ],
            },
        ],
    }


def _chat(gw: Any, model: str, stream: bool) -> tuple[int, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    with httpx.stream("POST", f"{gw.url}/chat/completions", json=body, headers=headers, timeout=20) as resp:
        return resp.status_code, resp.read().decode()


@pytest.mark.parametrize("workers", [1, 2])
def test_echoed_keys_never_leave_the_gateway(
    start_gateway, fake_openai: FakeOpenAI, anthropic_fake: FakeAnthropic, capture: CaptureServer, workers: int
) -> None:
    anthropic_fake.reset()
    gw = start_gateway(_config(fake_openai, anthropic_fake, capture), workers=workers)
    secrets = {**KEYS, "claude": ANTHROPIC_KEY}
    answers: list[str] = []
    for model, key in secrets.items():
        fake: Any = anthropic_fake if model == "claude" else fake_openai
        for stream in (False, True):
            fake.faults.append({"echo_key": "stream" if stream else True})
            status, text = _chat(gw, model, stream)
            # The upstream did receive the key and echo it: the check below could fail.
            sent = fake.requests[-1].headers
            assert key in (sent.get("Authorization", "").removeprefix("Bearer "), sent.get("api-key"), sent.get("x-api-key")), (
                model
            )
            if stream:
                assert status == 200 and '"error"' in text, (model, text)
            else:
                assert status == 401, (model, status, text)
            assert "[redacted]" in text, (model, text)  # the upstream's words came through, masked
            answers.append(text)
            for form in _forms(key):
                assert form not in text, (model, stream, form, text)

    events = capture.wait_for_events(len(secrets) * 2)
    assert any(e["properties"].get("$ai_error") for e in events), events
    metrics = httpx.get(f"{gw.base_url}/metrics", timeout=10).text
    gw.wait_for_records(len(secrets) * 2)
    logs = gw.logs()
    assert "[redacted]" in logs  # the errors were logged, masked
    published = {"log": logs, "metrics": metrics, "posthog events": json.dumps([e for e in events], ensure_ascii=False)}
    everything = [*secrets.values(), POSTHOG_KEY, "redis-pass-Hk39dLq", MASTER_KEY]
    for where, text in published.items():
        for secret in everything:
            for form in _forms(secret) if secret in secrets.values() else [secret]:
                assert form not in text, (where, form)
