"""Public model names to deployments; the only place that retries.

For one request the router walks a chain of model groups (the requested model,
then its ``fallbacks``). Within a group the strategy orders the deployments;
each attempt takes the best available one that this request has tried least
often, so a failure moves on to the next deployment and a single-deployment
group is retried in place. Retrying a deployment already tried waits an
exponential backoff with full jitter (or the upstream's Retry-After), capped by
``max_s``; switching to a fresh deployment goes at once. No attempt starts
after the deadline. Non-retryable errors (the caller's own mistakes) return at
once. Cooling deployments are skipped while a healthy one remains in the group
or its fallbacks; when none does, the one recovering soonest is tried anyway
(refusing outright would turn one bad minute of a lone deployment into an outage). Health (cool-downs, half-open probes) is kept per deployment and, with
Redis, shared by replicas.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from lockgate.config import Config, Deployment, ModelGroup
from lockgate.errors import GatewayError, ProviderOverloaded
from lockgate.providers.base import Provider
from lockgate.routing.backoff import backoff_delay
from lockgate.routing.health import Health
from lockgate.routing.shared import CooldownStore, build_cooldowns
from lockgate.routing.strategies import STRATEGIES
from lockgate.usage.pricing import Price, deployment_price

T = TypeVar("T")
log = structlog.get_logger("lockgate.router")


@dataclass(slots=True)
class Upstream:
    """One deployment at run time: its config, its provider, its name and its health."""

    id: str
    index: int
    config: Deployment
    provider: Provider
    health: Health = field(default_factory=Health)
    key: str = ""  # model/deployment id: names it across replicas (shared cool-downs)
    # The one price of this deployment (table + overrides), resolved once here at start-up;
    # None when unknown. Records, the cost strategy and telemetry all read it.
    price: Price | None = field(init=False)
    unit_price: float = field(init=False)  # USD per Mtok, input + output; unknown: +inf (tried last)

    def __post_init__(self) -> None:
        self.price = deployment_price(self.config)
        self.unit_price = math.inf if self.price is None else self.price.unit

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
    at: float = 0.0  # router clock when it started (deadlines)
    waited_s: float = 0.0  # backoff slept before it
    recorded: bool = False  # its own record was emitted


def build_upstreams(config: Config, provider_for: Callable[[Deployment], Provider]) -> dict[str, list[Upstream]]:
    """Each model group's deployments at run time, their providers made by ``provider_for`` (the app's factory)."""
    upstreams: dict[str, list[Upstream]] = {}
    for group in config.models:
        ups = []
        for i, dep in enumerate(group.deployments):
            up = Upstream(dep.display_id(i), i, dep, provider_for(dep))
            up.key = f"{group.name}/{up.id}"
            ups.append(up)
        upstreams[group.name] = ups
    return upstreams


class Router:
    def __init__(
        self,
        config: Config,
        upstreams: Mapping[str, list[Upstream]],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        cooldowns: CooldownStore | None = None,
    ) -> None:
        """``upstreams`` are built outside (``build_upstreams``), one list per model group; the router owns them."""
        self._config = config
        self.clock, self._sleep = clock, sleep
        self._rng = rng or random.Random()
        self.cooldowns: CooldownStore = cooldowns or build_cooldowns(config)
        self.routes: dict[str, ModelRoute] = {
            group.name: ModelRoute(group.name, group, list(upstreams[group.name])) for group in config.models
        }
        # Fallback chains resolved once: the model itself, then its fallbacks (one level, no repeats).
        self._chains: dict[str, list[ModelRoute]] = {}
        for name, route in self.routes.items():
            chain = [route]
            for fb in route.group.fallbacks:
                if fb in self.routes and all(r.name != fb for r in chain):
                    chain.append(self.routes[fb])
            self._chains[name] = chain

    def get(self, name: str) -> ModelRoute | None:
        return self.routes.get(name)

    def order(self, route: ModelRoute) -> list[Upstream]:
        """Deployments in the order the route's strategy prefers them for one request."""
        return STRATEGIES[route.group.strategy](route.upstreams, self._rng)

    @property
    def deadline_s(self) -> float:
        return self._config.router.deadline_s

    @property
    def max_attempts(self) -> int:
        """Attempts one call may make (a resumed stream counts its resumes against it)."""
        return self._config.router.max_attempts

    async def call(
        self,
        route: ModelRoute,
        op: Callable[[Upstream], Awaitable[T]],
        attempts: list[Attempt],
        *,
        hold: bool = False,
        avoid: Iterable[Upstream] = (),
        deadline: float | None = None,
        only: Upstream | None = None,
    ) -> T:
        """Run ``op`` on deployments until one succeeds; every try is appended to ``attempts``.

        ``hold`` keeps the winner counted as busy until ``release`` (open streams);
        ``avoid`` counts deployments as already tried (a stream resumed elsewhere);
        ``only`` pins the call to one deployment, no fallbacks (it holds the request's state).
        """
        cfg = self._config.router
        deadline = deadline if deadline is not None else self.clock() + cfg.deadline_s
        last: GatewayError | None = None
        failed = 0  # failures in this call: the backoff exponent
        chain = self._chains[route.name] if only is None else [route]
        for position, group in enumerate(chain):
            plan = self.order(group) if only is None else [only]
            later = chain[position + 1 :]
            tries: dict[int, int] = {id(u): 1 for u in avoid}
            last_error: dict[int, GatewayError] = {}
            for _ in range(cfg.max_attempts):
                now = self.clock()
                if now >= deadline:
                    raise last or _deadline_error(route)
                upstream = self._pick(plan, tries, now)
                if upstream is None:
                    if any(self._available(u, now) for r in later for u in r.upstreams):
                        break  # every deployment here is cooling down: on to the fallbacks
                    # Nothing healthy anywhere: better to try than to refuse (soonest recovery first).
                    upstream = self._pick(sorted(plan, key=lambda u: u.health.cooled_until), tries, now, force=True)
                    assert upstream is not None  # a group has at least one deployment
                waited = 0.0
                if tries.get(id(upstream)):
                    prev = last_error.get(id(upstream))
                    waited = backoff_delay(failed, cfg.backoff, self._rng, prev.retry_after_s if prev else None)
                    if now + waited >= deadline:
                        raise last or _deadline_error(route)
                    if waited > 0:
                        await self._sleep(waited)
                        now = self.clock()
                tries[id(upstream)] = tries.get(id(upstream), 0) + 1
                attempt = Attempt(upstream, len(attempts) + 1, time.perf_counter(), at=now, waited_s=waited)
                attempts.append(attempt)
                health = upstream.health
                health.started(now)
                try:
                    result = await op(upstream)
                except GatewayError as err:
                    attempt.latency_ms = (time.perf_counter() - attempt.started) * 1000
                    attempt.error = err
                    health.released()
                    if not err.retryable:
                        health.probing = False
                        raise
                    self.failed(upstream, err)
                    last, last_error[id(upstream)] = err, err
                    failed += 1
                    continue
                except BaseException:
                    # Cancelled (client gone) or a bug: not the deployment's fault.
                    health.released()
                    health.probing = False
                    raise
                attempt.latency_ms = (time.perf_counter() - attempt.started) * 1000
                if health.tripped:
                    self.cooldowns.clear(upstream.key)  # recovered: replicas may use it again
                health.succeeded(attempt.latency_ms)
                if not hold:
                    health.released()
                return result
        if last is not None:
            raise last
        raise _cooling_error(route, chain, self.clock())

    def _pick(self, plan: list[Upstream], tries: dict[int, int], now: float, force: bool = False) -> Upstream | None:
        """The available deployment tried least often by this request, in strategy order."""
        best: Upstream | None = None
        best_tries = 0
        for up in plan:
            if not force and not self._available(up, now):
                continue
            n = tries.get(id(up), 0)
            if best is None or n < best_tries:
                best, best_tries = up, n
                if n == 0:
                    break
        return best

    def _available(self, up: Upstream, now: float) -> bool:
        remote = self.cooldowns.until(up.key)  # a replica's cool-down, mirrored locally
        if remote is not None and remote > now:
            h = up.health
            h.tripped = True
            h.cooled_until = max(h.cooled_until, remote)
        return up.health.available(now)

    def failed(self, upstream: Upstream, err: GatewayError) -> None:
        """Count a retryable failure against a deployment (also used for mid-stream breaks)."""
        if not err.retryable:
            return
        now = self.clock()
        seconds = upstream.health.failed(err, now, self._config.router.cooldown)
        if seconds is not None:
            log.warning("deployment_cooled_down", deployment=upstream.id, seconds=round(seconds, 3), error=err.kind)
            self.cooldowns.publish(upstream.key, now + seconds, seconds)

    def release(self, upstream: Upstream) -> None:
        """A held deployment's stream is over."""
        upstream.health.released()

    def describe(self) -> list[dict[str, object]]:
        now = self.clock()
        out: list[dict[str, object]] = []
        for r in self.routes.values():
            deps = []
            for u in r.upstreams:
                self._available(u, now)
                deps.append({"id": u.id, "provider": u.config.provider, **u.health.describe(now)})
            out.append({"model": r.name, "strategy": r.group.strategy, "deployments": deps})
        return out

    async def start(self) -> None:
        await self.cooldowns.start([u.key for r in self.routes.values() for u in r.upstreams], self.clock)

    async def aclose(self) -> None:
        await self.cooldowns.aclose()
        for route in self.routes.values():
            for upstream in route.upstreams:
                await upstream.provider.aclose()


def _deadline_error(route: ModelRoute) -> GatewayError:
    return ProviderOverloaded(f"No deployment of model `{route.name}` answered before the routing deadline.")


def _cooling_error(route: ModelRoute, chain: list[ModelRoute], now: float) -> GatewayError:
    ends = [u.health.cooled_until for r in chain for u in r.upstreams if u.health.cooled_until > now]
    retry_after = max(0.0, min(ends) - now) if ends else None
    return ProviderOverloaded(
        f"Every deployment of model `{route.name}` is cooling down after failures; try again shortly.",
        retry_after_s=retry_after,
    )
