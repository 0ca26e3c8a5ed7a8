"""A record's cost in USD split into input and output, for the telemetry sinks.

Pricing belongs to the usage work (``lockgate/usage/pricing.py`` and
``lockgate/usage/cost.py``); this module only applies it per deployment,
with prices resolved once at start-up. A cost already on the record
(``cost_usd``) wins for the total. An unknown price gives None, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockgate.config import Config
from lockgate.records import RequestRecord

try:  # the usage work may not be there yet: then there are no costs, only tokens
    from lockgate.usage.cost import cost_usd as _cost_usd
    from lockgate.usage.pricing import deployment_price as _deployment_price
except ImportError:  # pragma: no cover - depends on what has landed
    _cost_usd = None  # type: ignore[assignment]
    _deployment_price = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Cost:
    input_usd: float | None
    output_usd: float | None
    total_usd: float


class CostTable:
    """(public model, deployment id) → price, built once from the config (ids repeat across models)."""

    def __init__(self, config: Config | None) -> None:
        self._prices: dict[tuple[str, str], Any] = {}
        if config is None or _deployment_price is None:
            return
        for group in config.models:
            for i, dep in enumerate(group.deployments):
                self._prices[(group.name, dep.display_id(i))] = _deployment_price(dep)

    def cost(self, record: RequestRecord) -> Cost | None:
        on_record = getattr(record, "cost_usd", None)
        if on_record is None and record.extra:
            on_record = record.extra.get("cost_usd")
        price = self._prices.get((record.public_model or "", record.deployment)) if record.deployment else None
        inp = out = None
        if price is not None and _cost_usd is not None:
            inp = _cost_usd(price, record.prompt_tokens, 0, record.cached_tokens, record.cache_creation_tokens, 0)
            out = _cost_usd(price, 0, record.completion_tokens, 0, 0, record.reasoning_tokens)
        if on_record is not None:
            return Cost(inp, out, float(on_record))
        if inp is None or out is None:
            return None
        return Cost(inp, out, round(inp + out, 12))
