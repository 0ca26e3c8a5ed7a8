"""/health/ready: each dependency and deployment reported; 503 exactly when the gateway cannot serve."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import openai_deployment
from tests.fakes.openai_upstream import FakeOpenAI
from tests.harness import MASTER_KEY, free_port, missing, service_available
from tests.telemetry_support import chat_body, telemetry_config


def _ready(base_url: str) -> tuple[int, dict]:
    r = httpx.get(f"{base_url}/health/ready", timeout=5)
    return r.status_code, r.json()


class OwnRedis:
    """A redis-server of this test's own, on a free port, so it can be stopped without touching the shared one."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "OwnRedis":
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not service_available("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed")
    server = OwnRedis(tmp_path).start()
    yield server
    server.stop()


def test_ready_reports_each_part(start_gateway, fake_openai: FakeOpenAI) -> None:
    gw = start_gateway(telemetry_config(fake_openai, posthog={"api_key": "phc_x", "host": "http://127.0.0.1:9"}))
    status, body = _ready(gw.base_url)
    assert status == 200 and body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["posthog"] == {"status": "ok", "queue_depth": 0, "queue_limit": 10000}
    assert body["checks"]["sinks"]["dropped"] == 0
    model = next(m for m in body["models"] if m["model"] == "gpt-failover")
    assert [(d["id"], d["state"]) for d in model["deployments"]] == [("primary", "healthy"), ("secondary", "healthy")]
    assert "phc_x" not in httpx.get(f"{gw.base_url}/health/ready").text


def test_redis_outage_makes_it_not_ready_when_the_limiter_denies(
    start_gateway, fake_openai: FakeOpenAI, own_redis: OwnRedis
) -> None:
    ratelimit = {"backend": "redis"}
    redis = {"url": f"redis://127.0.0.1:{own_redis.port}/0", "on_error": "deny", "key_prefix": f"lgtest:{own_redis.port}:"}
    gw = start_gateway(telemetry_config(fake_openai, ratelimit=ratelimit, redis=redis))
    assert _ready(gw.base_url)[0] == 200
    own_redis.stop()
    status, body = _ready(gw.base_url)
    assert (status, body["status"], body["failing"]) == (503, "not_ready", ["redis"])
    assert body["checks"]["redis"]["status"] == "down"
    own_redis.start()
    deadline = time.monotonic() + 5
    while _ready(gw.base_url)[0] != 200:
        assert time.monotonic() < deadline, "did not become ready again"
        time.sleep(0.1)


def test_redis_outage_only_degrades_when_the_limiter_allows(start_gateway, fake_openai: FakeOpenAI, own_redis: OwnRedis) -> None:
    ratelimit = {"backend": "redis"}
    redis = {"url": f"redis://127.0.0.1:{own_redis.port}/0", "on_error": "allow", "key_prefix": f"lgtest:{own_redis.port}:"}
    gw = start_gateway(telemetry_config(fake_openai, ratelimit=ratelimit, redis=redis))
    own_redis.stop()
    status, body = _ready(gw.base_url)
    assert (status, body["status"], body["degraded"]) == (200, "degraded", ["redis"])


def test_not_ready_when_every_deployment_cools_down(start_gateway, fake_openai: FakeOpenAI) -> None:
    cfg = {
        "auth": {"master_key": MASTER_KEY},
        "models": [{"name": "only", "deployments": [openai_deployment(fake_openai)]}],
        "router": {"max_attempts": 1, "cooldown": {"failures": 1, "cooldown_s": 60}},
    }
    gw = start_gateway(cfg)
    assert _ready(gw.base_url)[0] == 200
    fake_openai.faults.append({"status": 500})
    client = openai.OpenAI(base_url=gw.url, api_key=MASTER_KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**chat_body("only"))
    status, body = _ready(gw.base_url)
    assert (status, body["failing"]) == (503, ["deployments"])
    assert body["models"][0]["deployments"][0]["state"] == "cooling"
