"""Public model names to deployments; the only place that retries.

The router orders a model's deployments by its strategy, calls them through
an operation the pipeline supplies, and moves on after a retryable failure
until one answers or ``max_attempts`` is spent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

from lockgate.config import Config, Deployment, ModelGroup
from lockgate.errors import GatewayError
from lockgate.providers import build_provider
from lockgate.providers.base import Provider
from lockgate.providers.http import HttpPool

T = TypeVar("T")


@dataclass(slots=True)
class Upstream:
    """One deployment at run time: its config, its provider and its name."""

    id: str
    index: int
    config: Deployment
    provider: Provider

    @property
    def api_base(self) -> str | None:
        return self.config.api_base


@dataclass(slots=True)
class ModelRoute:
    name: str
    group: ModelGroup
    upstreams: list[Upstream]
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass(slots=True)
class Attempt:
    """What one try at one deployment came to."""

    upstream: Upstream
    number: int
    started: float
    latency_ms: float = 0.0
    error: GatewayError | None = None


class Router:
    def __init__(self, config: Config, pool: HttpPool) -> None:
        self._config = config
        self.routes: dict[str, ModelRoute] = {}
        for group in config.models:
            upstreams = []
            for i, dep in enumerate(group.deployments):
                session = pool.session_for(dep) if dep.provider != "mock" else None
                upstreams.append(Upstream(dep.display_id(i), i, dep, build_provider(dep, session)))  # type: ignore[arg-type]
            self.routes[group.name] = ModelRoute(group.name, group, upstreams)

    def get(self, name: str) -> ModelRoute | None:
        return self.routes.get(name)

    def order(self, route: ModelRoute) -> list[Upstream]:
        """Deployments in the order to try them (priority: lowest value first, then config order)."""
        return sorted(route.upstreams, key=lambda u: (u.config.priority, u.index))

    async def call(
        self,
        route: ModelRoute,
        op: Callable[[Upstream], Awaitable[T]],
        attempts: list[Attempt],
    ) -> T:
        """Run ``op`` on deployments until one succeeds; every try is appended to ``attempts``."""
        candidates = self.order(route)
        max_attempts = self._config.router.max_attempts
        last: GatewayError | None = None
        for number in range(1, max_attempts + 1):
            upstream = candidates[(number - 1) % len(candidates)]
            attempt = Attempt(upstream, number, time.perf_counter())
            attempts.append(attempt)
            try:
                result = await op(upstream)
            except GatewayError as err:
                attempt.latency_ms = (time.perf_counter() - attempt.started) * 1000
                attempt.error = err
                last = err
                if not err.retryable:
                    raise
                continue
            attempt.latency_ms = (time.perf_counter() - attempt.started) * 1000
            return result
        assert last is not None
        raise last

    def describe(self) -> list[dict[str, object]]:
        return [
            {"model": r.name, "deployments": [{"id": u.id, "provider": u.config.provider, "state": "healthy"} for u in r.upstreams]}
            for r in self.routes.values()
        ]

    async def aclose(self) -> None:
        for route in self.routes.values():
            for upstream in route.upstreams:
                await upstream.provider.aclose()
