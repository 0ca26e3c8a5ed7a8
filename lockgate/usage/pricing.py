"""The one price path: the built-in table (USD per million tokens), per-deployment
overrides, and the cost of one call split into input and output.

A deployment's price is resolved once, when its ``Upstream`` is built at start-up
(``deployment_price``); the pipeline prices each record with ``call_cost`` and
the record carries ``cost_usd`` with its ``input_cost_usd`` / ``output_cost_usd``
split. The router's cost strategy, the usage writer and telemetry read those
and never price again.

Sources (read through the search tool on 2026-11-20; verify before billing):
- OpenAI: the pricing page developers.openai.com/api/docs/pricing as quoted on
  2026-06-04 (TokenMix, "Confirmed OpenAI pricing": gpt-5.5, gpt-5.4 family),
  2026-06-21 (TokenMath: gpt-4.1 family, text-embedding-3-small), March 2026
  (DeployBase: gpt-5 family, gpt-4o, o3, o4-mini) and GitHub's docs price table
  (data/tables/copilot/models-and-pricing.yml: gpt-4.1 and gpt-5-mini cached input).
- Anthropic: platform.claude.com/docs/en/about-claude/pricing ("Model pricing":
  base input, 5m cache writes, cache hits, output) as stored in 2026.

Cache writes are priced at the 5-minute rate (1.25x input): the usage Anthropic
reports does not always split 5m from 1h writes. No model in the table prices
reasoning tokens apart from output tokens; ``Price.reasoning`` exists for a
deployment or a future model that does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lockgate.config import Deployment

MTOK = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. ``cached_input`` / ``cache_write`` None: priced as input."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None  # None: reasoning tokens are output tokens

    @property
    def unit(self) -> float:
        """Input + output price: what the router's cost strategy ranks by."""
        return self.input + self.output


def _p(i: float, o: float, cached: float | None = None, write: float | None = None) -> Price:
    return Price(input=i, output=o, cached_input=cached, cache_write=write)


OPENAI: dict[str, Price] = {
    "gpt-5.5": _p(5.00, 30.00, 0.50),
    "gpt-5.5-pro": _p(30.00, 180.00),
    "gpt-5.4": _p(2.50, 15.00, 0.25),
    "gpt-5.4-pro": _p(30.00, 180.00),
    "gpt-5.4-mini": _p(0.75, 4.50, 0.075),
    "gpt-5.4-nano": _p(0.20, 1.25, 0.02),
    "gpt-5": _p(1.25, 10.00, 0.125),
    "gpt-5-mini": _p(0.25, 2.00, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-4.1": _p(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "gpt-4o": _p(2.50, 10.00, 1.25),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "o3": _p(2.00, 8.00, 0.50),
    "o3-mini": _p(1.10, 4.40, 0.55),
    "o4-mini": _p(1.10, 4.40, 0.275),
    "text-embedding-3-small": _p(0.02, 0.0),
    "text-embedding-3-large": _p(0.13, 0.0),
    "text-embedding-ada-002": _p(0.10, 0.0),
}

_OPUS_NEW = _p(5.00, 25.00, 0.50, 6.25)
_OPUS_OLD = _p(15.00, 75.00, 1.50, 18.75)
_SONNET = _p(3.00, 15.00, 0.30, 3.75)

ANTHROPIC: dict[str, Price] = {
    "claude-opus-5": _OPUS_NEW,
    "claude-opus-4-8": _OPUS_NEW,
    "claude-opus-4-7": _OPUS_NEW,
    "claude-opus-4-6": _OPUS_NEW,
    "claude-opus-4-5": _OPUS_NEW,
    "claude-opus-4-1": _OPUS_OLD,
    "claude-opus-4": _OPUS_OLD,
    "claude-opus-4-0": _OPUS_OLD,
    "claude-3-opus": _OPUS_OLD,
    "claude-sonnet-4-6": _SONNET,
    "claude-sonnet-4-5": _SONNET,
    "claude-sonnet-4": _SONNET,
    "claude-sonnet-4-0": _SONNET,
    "claude-3-7-sonnet": _SONNET,
    "claude-3-5-sonnet": _SONNET,
    "claude-haiku-4-5": _p(1.00, 5.00, 0.10, 1.25),
    "claude-3-5-haiku": _p(0.80, 4.00, 0.08, 1.00),
    "claude-3-haiku": _p(0.25, 1.25, 0.03, 0.30),
}

FREE = Price(input=0.0, output=0.0)  # the mock provider costs nothing, and says so

# "-2025-04-14", "-20250929", "-latest": snapshots and aliases share their model's price.
_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


def normalise(model: str) -> str:
    name = model.strip().lower()
    if "/" in name:  # "openai/gpt-4o", "anthropic/claude-…"
        name = name.rsplit("/", 1)[1]
    return _SUFFIX.sub("", name)


def builtin_price(provider: str, model: str) -> Price | None:
    """The table's price for an upstream model id, or None when it is not known."""
    if provider == "mock":
        return FREE
    name = normalise(model)
    table = ANTHROPIC if provider == "anthropic" else OPENAI
    return table.get(name) or OPENAI.get(name) or ANTHROPIC.get(name)


def deployment_price(dep: "Deployment") -> Price | None:
    """The built-in price with the deployment's overrides on top; None when input or output is unknown."""
    base = builtin_price(dep.provider, dep.model)
    inp = dep.input_cost_per_mtok if dep.input_cost_per_mtok is not None else (base.input if base else None)
    out = dep.output_cost_per_mtok if dep.output_cost_per_mtok is not None else (base.output if base else None)
    if inp is None or out is None:
        return None
    cached = dep.cached_input_cost_per_mtok
    if cached is None and base is not None and dep.input_cost_per_mtok is None:
        cached = base.cached_input
    write = dep.cache_write_cost_per_mtok
    if write is None and base is not None and dep.input_cost_per_mtok is None:
        write = base.cache_write
    return Price(input=inp, output=out, cached_input=cached, cache_write=write, reasoning=base.reasoning if base else None)


class TokenCounts(Protocol):
    """What ``call_cost`` reads of a providers.base.Usage (OpenAI's meaning of each count)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_creation_tokens: int
    reasoning_tokens: int


@dataclass(frozen=True, slots=True)
class Cost:
    """USD of one call; ``total_usd`` is the sum of the two parts."""

    input_usd: float
    output_usd: float
    total_usd: float


NO_COST = Cost(0.0, 0.0, 0.0)


def call_cost(price: Price | None, usage: TokenCounts | None) -> Cost | None:
    """The exact cost of one call, split into input and output.

    ``prompt_tokens`` includes the cached (read) and cache-creation (write)
    tokens, and ``completion_tokens`` includes the reasoning tokens, so:

        input  = (prompt - cached - cache_write) x input
               + cached x cached_input          (input rate when the model has none)
               + cache_write x cache_write_rate (input rate when the model has none)
        output = (completion - reasoning) x output
               + reasoning x reasoning_rate     (output rate unless priced apart)

    A call without tokens costs 0 whatever its price; a call with tokens and no
    known price costs None (flagged ``cost_unknown``), never a silent 0.
    """
    if usage is None or (usage.prompt_tokens <= 0 and usage.completion_tokens <= 0):
        return NO_COST
    if price is None:
        return None
    prompt, completion = max(0, usage.prompt_tokens), max(0, usage.completion_tokens)
    cached = max(0, min(usage.cached_tokens, prompt))
    written = max(0, min(usage.cache_creation_tokens, prompt - cached))
    reasoning = max(0, min(usage.reasoning_tokens, completion))
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    reasoning_rate = price.output if price.reasoning is None else price.reasoning
    inp = (prompt - cached - written) * price.input + cached * cached_rate + written * write_rate
    out = (completion - reasoning) * price.output + reasoning * reasoning_rate
    # Round away float dust (1e-12 USD) so sums and budget boundaries compare exactly.
    inp_usd, out_usd = round(inp / MTOK, 12), round(out / MTOK, 12)
    return Cost(inp_usd, out_usd, round(inp_usd + out_usd, 12))
