"""Teams: the budget and rate limits that every key of a team shares.

A key (or a JWT's team claim) names its team by a string; a team *record*, kept
in the `teams` table, gives that name a budget (`max_budget_usd` per
`budget_period`) and limits (`rpm`, `tpm`). A team name without a record is
still a team: its keys are grouped in reports and share `ratelimit.teams`
limits from the config, but no budget.

`TeamRepository` is the SQL side (admin API, CLI). `Teams` is the hot path: the
same in-process cache as keys (auth/cache.py), by team name, so a request never
reads the database; `attach` copies the record's budget and limits onto the
caller's Principal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from lockgate.auth.cache import CachedLookup, Entry
from lockgate.auth.principal import Principal
from lockgate.store import Store
from lockgate.store.db import aware, utcnow
from lockgate.store.tables import teams

# Team names travel in URLs (/admin/teams/{team}) and in rate-limit and budget counter names.
TEAM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,199}$")
EDITABLE = ("max_budget_usd", "budget_period", "rpm", "tpm", "max_parallel_requests", "metadata")
_MAX_DERIVED = 10_000  # enriched principals remembered per team entry


@dataclass(frozen=True, slots=True)
class TeamRow:
    id: str
    max_budget_usd: float | None = None
    budget_period: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel_requests: int | None = None
    metadata: dict[str, Any] | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @classmethod
    def from_db(cls, row: Any) -> "TeamRow":
        m = row._mapping
        return cls(
            id=m["id"],
            max_budget_usd=m["max_budget_usd"],
            budget_period=m["budget_period"],
            rpm=m["rpm"],
            tpm=m["tpm"],
            max_parallel_requests=m["max_parallel_requests"],
            metadata=m["metadata"],
            created_at=aware(m["created_at"]),
            updated_at=aware(m["updated_at"]),
        )

    def apply(self, principal: Principal) -> Principal:
        """The caller with this team's budget and limits."""
        return dataclasses.replace(
            principal,
            team_max_budget_usd=self.max_budget_usd,
            team_budget_period=(self.budget_period or "total") if self.max_budget_usd is not None else None,
            team_rpm=self.rpm,
            team_tpm=self.tpm,
            team_max_parallel_requests=self.max_parallel_requests,
        )

    def public(self) -> dict[str, Any]:
        """The JSON view for the admin API and the CLI."""
        out: dict[str, Any] = {"object": "team"}
        for name in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return out


class TeamExists(Exception):
    """A team with that name is already stored."""


class TeamRepository:
    """Teams in SQL, for the admin API and the CLI (not the request path)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, team_id: str, **fields: Any) -> TeamRow:
        values = {k: v for k, v in fields.items() if k in EDITABLE}
        try:
            async with self.store.begin() as conn:
                await conn.execute(teams.insert().values(id=team_id, created_at=utcnow(), **values))
        except IntegrityError:
            raise TeamExists(team_id) from None
        row = await self.get(team_id)
        assert row is not None
        return row

    async def get(self, team_id: str) -> TeamRow | None:
        async with self.store.connect() as conn:
            row = (await conn.execute(sa.select(teams).where(teams.c.id == team_id))).first()
        return TeamRow.from_db(row) if row else None

    async def list(self, *, limit: int | None = None, offset: int = 0) -> list[TeamRow]:
        query = sa.select(teams).order_by(teams.c.id).limit(limit).offset(offset)
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [TeamRow.from_db(r) for r in rows]

    async def update(self, team_id: str, **fields: Any) -> TeamRow | None:
        values = {k: v for k, v in fields.items() if k in EDITABLE}
        if values:
            async with self.store.begin() as conn:
                await conn.execute(teams.update().where(teams.c.id == team_id).values(updated_at=utcnow(), **values))
        return await self.get(team_id)

    async def delete(self, team_id: str) -> TeamRow | None:
        row = await self.get(team_id)
        if row is not None:
            async with self.store.begin() as conn:
                await conn.execute(teams.delete().where(teams.c.id == team_id))
        return row


@dataclass(slots=True)
class _TeamEntry(Entry):
    # key id → (the principal as authenticated, the same with the team's fields): built once per
    # cached principal, not per request. Keyed by id, checked by identity, so it never goes stale.
    derived: dict[str, tuple[Principal, Principal]] = field(default_factory=dict)


class Teams(CachedLookup[TeamRow]):
    """The hot-path lookup: a team name → its record, from the cache when fresh (misses cached too)."""

    def __init__(self, repo: TeamRepository, ttl_s: float, *, max_entries: int = 100_000, max_negative: int = 10_000) -> None:
        super().__init__(ttl_s, max_entries=max_entries, max_negative=max_negative)
        self.repo = repo

    async def _fetch(self, cache_key: str) -> TeamRow | None:
        return await self.repo.get(cache_key)

    def _make_entry(self, row: TeamRow | None, deadline: float) -> Entry:
        return _TeamEntry(deadline, row)

    async def attach(self, principal: Principal) -> Principal:
        """`principal` with its team's budget and limits, when its team has a record."""
        team = principal.team
        if team is None:
            return principal
        now = time.monotonic()
        entry = self._cache.get(team)
        if entry is None or entry.deadline <= now:
            if self._negative.get(team, 0.0) > now:
                return principal
            entry = await self._load(team, entry, now)
        row: TeamRow | None = entry.row
        if row is None:
            return principal
        assert isinstance(entry, _TeamEntry)
        known = entry.derived.get(principal.key_id)
        if known is not None and known[0] is principal:
            return known[1]
        enriched = row.apply(principal)
        if len(entry.derived) >= _MAX_DERIVED:
            entry.derived.clear()
        entry.derived[principal.key_id] = (principal, enriched)
        return enriched

    def invalidate(self, row_id: str) -> None:
        """Forget a team at once (created, changed or deleted on this replica)."""
        super().invalidate(row_id)
        self._cache.pop(row_id, None)
        self._negative.pop(row_id, None)
