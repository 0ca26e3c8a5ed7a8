"""The exact cost of one call in USD, from its usage and its deployment's price.

Token counts follow OpenAI's meaning (see providers.base.Usage): ``prompt_tokens``
includes the cached (read) and cache-creation (write) tokens, and
``completion_tokens`` includes the reasoning tokens. So:

    cost = (prompt - cached - cache_write) x input
         + cached x cached_input           (input rate when the model has none)
         + cache_write x cache_write_rate  (input rate when the model has none)
         + (completion - reasoning) x output
         + reasoning x reasoning_rate      (output rate unless priced apart)

A call without tokens costs 0 whatever its price; a call with tokens and no
known price costs None (flagged ``cost_unknown``), never a silent 0.
"""

from __future__ import annotations

from typing import Any

from lockgate.config import Deployment
from lockgate.usage.pricing import Price, deployment_price

MTOK = 1_000_000.0


def cost_usd(
    price: Price | None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cached_tokens: int = 0,
    cache_creation_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> float | None:
    if prompt_tokens <= 0 and completion_tokens <= 0:
        return 0.0
    if price is None:
        return None
    cached = max(0, min(cached_tokens, prompt_tokens))
    written = max(0, min(cache_creation_tokens, prompt_tokens - cached))
    fresh = prompt_tokens - cached - written
    reasoning = max(0, min(reasoning_tokens, completion_tokens))
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    reasoning_rate = price.output if price.reasoning is None else price.reasoning
    total = (
        fresh * price.input
        + cached * cached_rate
        + written * write_rate
        + (completion_tokens - reasoning) * price.output
        + reasoning * reasoning_rate
    )
    # Round away float dust (1e-12 USD) so sums and budget boundaries compare exactly.
    return round(total / MTOK, 12)


class Pricer:
    """Prices per deployment, resolved once per deployment object and then looked up."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Deployment, Price | None]] = {}

    def price(self, dep: Deployment) -> Price | None:
        hit = self._cache.get(id(dep))
        if hit is None or hit[0] is not dep:
            hit = (dep, deployment_price(dep))
            self._cache[id(dep)] = hit
        return hit[1]

    def cost(self, dep: Deployment | None, usage: Any) -> float | None:
        """Cost of a call to `dep` with `usage` (a providers.base.Usage, or None for no tokens)."""
        if usage is None:
            return 0.0
        return cost_usd(
            self.price(dep) if dep is not None else None,
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.cached_tokens,
            usage.cache_creation_tokens,
            usage.reasoning_tokens,
        )
