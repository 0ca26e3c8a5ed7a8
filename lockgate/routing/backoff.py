"""Exponential backoff with full jitter, honouring the upstream's Retry-After."""

from __future__ import annotations

import random

from lockgate.config import Backoff


def backoff_delay(retry: int, cfg: Backoff, rng: random.Random, retry_after_s: float | None = None) -> float:
    """Seconds to wait before the ``retry``-th retry (1 = the first retry).

    Full jitter (uniform in [0, min(max_s, base_s * 2**(retry-1))]) spreads the
    retries of many clients; an upstream's Retry-After replaces the computed
    value, capped by ``max_s`` (the caller caps by the deadline).
    """
    if retry_after_s is not None:
        return min(cfg.max_s, max(0.0, retry_after_s))
    ceiling = min(cfg.max_s, cfg.base_s * (2.0 ** max(0, retry - 1)))
    if cfg.jitter == "none":
        return ceiling
    return rng.uniform(0.0, ceiling)
