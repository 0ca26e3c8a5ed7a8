"""Principal: an authenticated caller and what it may do (kept apart so key and JWT modules can build one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and what it may do."""

    key_id: str
    user: str | None = None
    team: str | None = None
    models: frozenset[str] | None = None  # None: every model
    is_admin: bool = False
    rpm: int | None = None
    tpm: int | None = None
    max_parallel_requests: int | None = None  # requests in flight at once
    max_budget_usd: float | None = None
    budget_period: str | None = None
    # From the team's record (auth/teams.py), where the caller's team has one.
    team_max_budget_usd: float | None = None
    team_budget_period: str | None = None
    team_rpm: int | None = None
    team_tpm: int | None = None
    team_max_parallel_requests: int | None = None

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models


MASTER = Principal(key_id="master", is_admin=True)
