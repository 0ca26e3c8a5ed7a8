"""Cool-downs shared by replicas, behind a small protocol.

The request path never waits on the store: ``until`` reads a local mirror and
``publish`` only schedules a write. A back-end that shares state (Redis) keeps
the mirror fresh from a background task. Which one serves is the config's
``router.cooldown.backend``, not the limiter's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lockgate.config import Config
    from lockgate.redis_client import SharedRedis


class CooldownStore(Protocol):
    async def start(self, keys: list[str], clock: Callable[[], float]) -> None: ...

    def until(self, key: str) -> float | None:
        """When a cool-down set by another replica ends (router clock), if one is known."""
        ...

    def publish(self, key: str, until: float, seconds: float) -> None:
        """This replica cooled ``key`` down for ``seconds`` (ends at ``until``, router clock)."""
        ...

    def clear(self, key: str) -> None:
        """``key`` answered again: end a shared cool-down early."""
        ...

    async def aclose(self) -> None: ...


class LocalCooldowns:
    """One process: its own Health is the whole truth, nothing to share."""

    async def start(self, keys: list[str], clock: Callable[[], float]) -> None:
        return None

    def until(self, key: str) -> float | None:
        return None

    def publish(self, key: str, until: float, seconds: float) -> None:
        return None

    def clear(self, key: str) -> None:
        return None

    async def aclose(self) -> None:
        return None


def build_cooldowns(config: "Config", redis: "SharedRedis | None" = None) -> CooldownStore:
    """Shared through the gateway's Redis client with ``router.cooldown.backend: redis``; else this process alone."""
    if config.router.cooldown.backend != "redis":
        return LocalCooldowns()
    if redis is None:
        raise ValueError("router.cooldown.backend is redis but no Redis client was given")
    from lockgate.routing.redis_cooldowns import RedisCooldowns

    return RedisCooldowns(redis)
