"""Rate limits end to end: real `lockgate serve` processes, the fake upstream, the real Redis."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import basic_config
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, GatewayProcess, free_port, missing, require_service

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def limited_config(
    fake: FakeOpenAI, limits: dict[str, int] | None = None, redis: dict[str, Any] | None = None, **ratelimit: Any
) -> dict[str, Any]:
    cfg = basic_config(fake, ratelimit=ratelimit, redis={"key_prefix": f"lgtest:{uuid.uuid4().hex[:12]}:", **(redis or {})})
    if limits:
        cfg["models"][0]["limits"] = limits
    return cfg


def chat(gw: GatewayProcess, model: str = "gpt-test", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    return httpx.post(f"{gw.url}/chat/completions", json=body, headers=AUTH, timeout=10)


def test_model_rpm_boundary_headers_and_429(fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(limited_config(fake_openai, {"rpm": 3}))
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    for remaining in ("2", "1", "0"):
        raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-ratelimit-limit-requests"] == "3"
        assert raw.headers["x-ratelimit-remaining-requests"] == remaining
        assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
        raw.parse()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    err = caught.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert err.body["type"] == "requests"  # type: ignore[index]
    assert "Rate limit reached for model `gpt-test` on requests per min (RPM): Limit 3, Used 3, Requested 1." in err.message
    assert 1 <= int(err.response.headers["retry-after"]) <= 61
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fake_openai.requests) == 3  # the refused request never went upstream
    # Another model is not limited, and carries no rate-limit headers.
    other = chat(gw, model="mock-gpt")
    assert other.status_code == 200 and "x-ratelimit-limit-requests" not in other.headers


def test_defaults_apply_to_the_master_key(fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(limited_config(fake_openai, defaults={"rpm": 2, "tpm": 100_000}))
    assert chat(gw, model="mock-gpt").status_code == 200
    assert chat(gw).status_code == 200
    refused = chat(gw, model="mock-gpt")
    assert refused.status_code == 429
    assert "for key `master` on requests per min" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-limit-tokens"] == "100000"


def test_tokens_are_reconciled_with_real_usage(fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess]) -> None:
    """Estimate 4 + 1000 tokens at admission; the fake reports 9 + 7 = 16 used."""
    gw = start_gateway(limited_config(fake_openai, {"tpm": 5000}))
    estimate = (len("hello") + 16 + 3) // 4 + 1000
    first = chat(gw, max_tokens=1000)
    assert first.headers["x-ratelimit-remaining-tokens"] == str(5000 - estimate)
    second = chat(gw, max_tokens=1000)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(5000 - 16 - estimate)
    # A stream cut short: what was relayed is counted (estimated), the rest is given back.
    fake_openai.faults.append({"drop_after": 1})
    with httpx.stream(
        "POST",
        f"{gw.url}/chat/completions",
        headers=AUTH,
        timeout=10,
        json={"model": "gpt-test", "max_tokens": 1000, "stream": True, "messages": [{"role": "user", "content": "hello"}]},
    ) as resp:
        assert resp.headers["x-ratelimit-remaining-tokens"] == str(5000 - 32 - estimate)
        resp.read()
    # An upstream failure after admission: nothing used, the estimate is refunded.
    fake_openai.faults.append({"status": 400, "message": "bad"})
    assert chat(gw, max_tokens=1000).status_code == 400
    probe = chat(gw, max_tokens=1000)
    remaining = int(probe.headers["x-ratelimit-remaining-tokens"])
    streamed = 5000 - 32 - estimate - remaining  # the cut stream's estimated usage
    assert 0 < streamed < 100, remaining
    # A whole stream with the usage chunk: charged exactly the reported 16.
    with httpx.stream(
        "POST",
        f"{gw.url}/chat/completions",
        headers=AUTH,
        timeout=10,
        json={"model": "gpt-test", "max_tokens": 1000, "stream": True, "messages": [{"role": "user", "content": "hello"}]},
    ) as resp:
        resp.read()
    after = chat(gw, max_tokens=1000)
    assert int(after.headers["x-ratelimit-remaining-tokens"]) == remaining + estimate - 16 - 16 - estimate


def test_tokens_refusal_names_the_limit(fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(limited_config(fake_openai, {"tpm": 1500}))
    assert chat(gw, max_tokens=1000).status_code == 200  # estimate 1006, then 16 used
    assert chat(gw, max_tokens=1000).status_code == 200  # 16 + 1006 at admission, 32 after
    refused = chat(gw, max_tokens=1480)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "tokens" and error["code"] == "rate_limit_exceeded"
    assert "on tokens per min (TPM): Limit 1500, Used 32, Requested 1486." in error["message"]
    assert "retry-after" in refused.headers


# --- Redis ------------------------------------------------------------------------------------


def test_two_gateways_share_one_limit_through_redis(
    fake_openai: FakeOpenAI, start_gateway: Callable[..., GatewayProcess]
) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    cfg = limited_config(fake_openai, {"rpm": 5, "tpm": 100_000}, backend="redis")
    a, b = start_gateway(cfg), start_gateway(cfg)
    statuses = [chat(gw).status_code for gw in (a, b, a, b, a, b, a, b)]
    assert statuses == [200] * 5 + [429] * 3
    assert len(fake_openai.requests) == 5
    last = chat(a)
    assert last.status_code == 429
    assert "Limit 5, Used 5, Requested 1" in last.json()["error"]["message"]
    assert last.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A throwaway redis-server this test may kill (never the machine's shared one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed", "install it to run the outage test")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    import socket

    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    yield port, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_redis_stopped_mid_test(
    policy: str,
    own_redis: tuple[int, subprocess.Popen[bytes]],
    fake_openai: FakeOpenAI,
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    port, proc = own_redis
    gw = start_gateway(
        limited_config(
            fake_openai,
            {"rpm": 100},
            backend="redis",
            redis={"url": f"redis://127.0.0.1:{port}/0", "on_error": policy, "timeout_s": 0.2, "connect_timeout_s": 0.2},
        )
    )
    ok = chat(gw)
    assert ok.status_code == 200 and ok.headers["x-ratelimit-remaining-requests"] == "99"
    proc.kill()
    proc.wait(5)
    for _ in range(3):
        started = time.monotonic()
        resp = chat(gw)
        assert time.monotonic() - started < 2.0  # never hangs
        if policy == "allow":
            assert resp.status_code == 200 and "x-ratelimit-remaining-requests" not in resp.headers
        else:
            assert resp.status_code == 503
            assert resp.json()["error"]["code"] == "rate_limiter_unavailable"
            assert resp.json()["error"]["type"] == "server_error"
            assert resp.headers["retry-after"] == "1"
    deadline = time.monotonic() + 5
    while "ratelimit_backend_error" not in gw.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "ratelimit_backend_error" in gw.logs()
    assert len(fake_openai.requests) == (4 if policy == "allow" else 1)
