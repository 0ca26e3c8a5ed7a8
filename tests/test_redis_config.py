"""The `redis:` section: one client's settings, each feature's own backend, and errors for the old fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockgate.config import ConfigError, parse_config
from lockgate.redis_client import SharedRedis, build_redis
from tests.harness import ROOT

MODELS = [{"name": "m", "deployments": [{"provider": "mock", "model": "m"}]}]


def config(**top: Any) -> Any:
    return parse_config({"models": MODELS, **top}, env={})


def test_every_feature_stays_in_process_unless_it_says_redis() -> None:
    c = config()
    assert (c.ratelimit.backend, c.budgets.backend, c.router.cooldown.backend) == ("memory", "memory", "memory")
    assert c.redis_users() == [] and build_redis(c) is None  # no client at all
    # The limiter on Redis no longer takes budgets and cool-downs with it.
    c = config(ratelimit={"backend": "redis"})
    assert c.redis_users() == ["ratelimit"]
    assert config(budgets={"backend": "redis"}).redis_users() == ["budgets"]
    assert config(router={"cooldown": {"backend": "redis"}}).redis_users() == ["cooldowns"]


async def test_one_client_with_the_sections_settings_and_no_retries() -> None:
    c = config(
        ratelimit={"backend": "redis"},
        budgets={"backend": "redis"},
        redis={
            "url": "redis://127.0.0.1:6399/2",
            "timeout_s": 0.4,
            "connect_timeout_s": 0.1,
            "max_connections": 7,
            "key_prefix": "gw1:",
            "on_error": "deny",
        },
    )
    shared = build_redis(c)
    assert isinstance(shared, SharedRedis)
    try:
        pool = shared.client.connection_pool
        kwargs = pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"], kwargs["db"]) == (0.4, 0.1, 2)
        assert kwargs["retry"].get_retries() == 0 and pool.max_connections == 7
        assert shared.deadline_s == pytest.approx(0.5) and shared.deny
        assert shared.key("budget") == "gw1:budget:"
    finally:
        await shared.aclose()


@pytest.mark.parametrize(
    ("section", "field", "where"),
    [
        ("ratelimit", {"redis_url": "redis://x:6379/0"}, "ratelimit.redis_url: moved to redis.url"),
        ("ratelimit", {"redis_timeout_s": 0.2}, "ratelimit.redis_timeout_s: moved to redis.timeout_s"),
        ("ratelimit", {"key_prefix": "a:"}, "ratelimit.key_prefix: moved to redis.key_prefix"),
        ("ratelimit", {"on_backend_error": "deny"}, "ratelimit.on_backend_error: moved to redis.on_error"),
    ],
)
def test_old_per_feature_redis_settings_say_where_they_went(section: str, field: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(**{section: {"backend": "redis", **field}})
    message = str(caught.value)
    assert where in message
    assert "budgets.backend" in message and "router.cooldown.backend" in message  # no silent move either


@pytest.mark.parametrize(
    ("redis", "where"),
    [
        ({"url": "http://127.0.0.1:6379"}, "redis.url: Value error, must start with redis://, rediss:// or unix://"),
        ({"timeout_s": 0}, "redis.timeout_s: Input should be greater than 0"),
        ({"max_connections": 0}, "redis.max_connections: Input should be greater than or equal to 1"),
        ({"on_error": "ignore"}, "redis.on_error: Input should be 'allow' or 'deny'"),
        ({"urls": "redis://x"}, "redis.urls: unknown field"),
    ],
)
def test_redis_section_is_validated_strictly(redis: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(redis=redis)
    assert where in str(caught.value)
    assert "router.cooldown.backend" not in str(caught.value)  # the move note only where a moved field was used


def test_check_config_names_the_moved_field_and_lists_backends(tmp_path: Path) -> None:
    def check(data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"models": MODELS, **data}))
        return subprocess.run(
            [sys.executable, "-m", "lockgate", "check-config", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    old = check({"ratelimit": {"backend": "redis", "redis_url": "redis://10.0.0.5:6379/0"}})
    assert old.returncode == 1 and "ratelimit.redis_url: moved to redis.url" in old.stderr
    assert "Traceback" not in old.stderr
    new = check({"ratelimit": {"backend": "redis"}, "router": {"cooldown": {"backend": "redis"}}})
    assert new.returncode == 0, new.stderr
    assert "back-ends: ratelimit redis, budgets memory, cool-downs redis; Redis on_error allow" in new.stdout
