"""The typed seam between the pipeline and its stages: one request's context, and the Admission protocol.

A stage (rate limits, budgets, tracing) reads and writes the fields named here;
nothing is passed through untyped string-keyed state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from lockgate.auth import Principal
from lockgate.providers.base import Usage

if TYPE_CHECKING:
    from lockgate.ingress.base import Ingress
    from lockgate.ratelimit.admission import Charge
    from lockgate.records import RequestRecord
    from lockgate.router import Attempt, ModelRoute, Upstream


@dataclass(slots=True)
class RequestContext:
    """Everything known about one request while it is served."""

    request_id: str
    endpoint: str  # chat | completions | embeddings
    client: str | None = None
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    principal: Principal | None = None
    body: dict[str, Any] | None = None
    route: ModelRoute | None = None
    stream: bool = False
    include_usage: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage | None = None
    ttft_ms: float | None = None
    # Headers every outcome carries (rate-limit state, deployment, attempts…).
    headers: dict[str, str] = field(default_factory=dict)
    # What the rate-limit stage charged at admission, corrected when the request ends.
    rate_limit_charge: Charge | None = None
    # What the budget stage reserved at admission (usage/budgets.py Hold), settled when the request ends.
    budget_hold: Any = None
    # The stream's relay (or its abandonment) has begun: the other must not record the request again.
    relay_started: bool = False
    # Prompt and output for analytics, only when PostHog's privacy mode is off (None otherwise: no cost).
    content: dict[str, Any] | None = None
    # A client dialect other than chat (ingress/base.py): parses the body to canonical chat and
    # renders answers, streams and errors back in its own shape. None for the OpenAI endpoints.
    ingress: Ingress | None = None
    # The one deployment this request may use (it holds the state the request continues), or None.
    pin: Upstream | None = None

    @property
    def upstream(self) -> Upstream | None:
        return self.attempts[-1].upstream if self.attempts else None


class Admission(Protocol):
    """A policy stage (rate limits, budgets): refuse by raising, settle when the request ends."""

    async def admit(self, ctx: RequestContext) -> None: ...

    def settle(self, ctx: RequestContext, record: RequestRecord) -> None: ...
