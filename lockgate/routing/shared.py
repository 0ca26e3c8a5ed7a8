"""Cool-downs shared by replicas, behind a small protocol.

The request path never waits on the store: ``until`` reads a local mirror and
``publish`` only schedules a write. A back-end that shares state (Redis) keeps
the mirror fresh from a background task.
"""

from __future__ import annotations

from typing import Callable, Protocol


class CooldownStore(Protocol):
    async def start(self, keys: list[str], clock: Callable[[], float]) -> None: ...

    def until(self, key: str) -> float | None:
        """When a cool-down set by another replica ends (router clock), if one is known."""
        ...

    def publish(self, key: str, until: float, seconds: float) -> None:
        """This replica cooled ``key`` down for ``seconds`` (ends at ``until``, router clock)."""
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

    async def aclose(self) -> None:
        return None
