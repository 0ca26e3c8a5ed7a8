"""Strategies: the order in which a model's deployments are tried for one request.

Each returns every deployment (the router skips unavailable ones and rotates on
retries), best first; ties fall back to (priority, config order) so choices are
predictable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lockgate.router import Upstream

# Share of requests that try deployments in random order under `latency`, so a
# deployment that was slow (or just recovered) gets measured again.
LATENCY_EXPLORATION = 0.1


def _rank(u: "Upstream") -> tuple[int, int]:
    return (u.config.priority, u.index)


def by_priority(ups: Sequence["Upstream"], rng: random.Random) -> list["Upstream"]:
    return sorted(ups, key=_rank)


def by_cost(ups: Sequence["Upstream"], rng: random.Random) -> list["Upstream"]:
    # Upstream.unit_price: the deployment's one price (input + output), fixed at start-up; unknown = +inf.
    return sorted(ups, key=lambda u: (u.unit_price, *_rank(u)))


def by_latency(ups: Sequence["Upstream"], rng: random.Random) -> list["Upstream"]:
    if rng.random() < LATENCY_EXPLORATION:
        out = list(ups)
        rng.shuffle(out)
        return out
    # Never measured → 0: a new deployment is tried first and so gets measured.
    return sorted(ups, key=lambda u: (u.health.latency_ms or 0.0, *_rank(u)))


def by_weight(ups: Sequence["Upstream"], rng: random.Random) -> list["Upstream"]:
    """A weighted random order (Efraimidis-Spirakis): first place is proportional to weight."""

    def key(u: "Upstream") -> float:
        w = u.config.weight
        return -math.inf if w <= 0 else math.log(1.0 - rng.random()) / w  # larger is better

    return sorted(ups, key=key, reverse=True)


def by_least_busy(ups: Sequence["Upstream"], rng: random.Random) -> list["Upstream"]:
    return sorted(ups, key=lambda u: (u.health.inflight, *_rank(u)))


STRATEGIES: dict[str, Callable[[Sequence["Upstream"], random.Random], list["Upstream"]]] = {
    "priority": by_priority,
    "cost": by_cost,
    "latency": by_latency,
    "weighted": by_weight,
    "least-busy": by_least_busy,
}
