"""Virtual API keys: generate, hash, store, and look up on the hot path through a cache.

A key is `lg-` + 32 random bytes (base64url). Only its SHA-256 and a short display
prefix are stored; the plaintext exists once, in the answer to its creation or
rotation. A fast hash is right here: the secret has 256 bits of entropy, so
there is nothing to stretch.

`KeyRepository` is the SQL side (admin API, CLI). `VirtualKeys` is what the
authenticator uses per request: an in-process cache by hash (positive entries for
`key_cache_ttl_s`, a bounded negative cache), one database read per key per TTL,
and `last_used_at` written in batches off the request path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import sqlalchemy as sa
import structlog

from lockgate.auth.cache import CachedLookup, Entry
from lockgate.auth.principal import Principal
from lockgate.background import Ticker
from lockgate.errors import AuthenticationFailed
from lockgate.store import Store
from lockgate.store.db import aware, utcnow
from lockgate.store.tables import api_keys

log = structlog.get_logger("lockgate.auth.keys")

KEY_PREFIX = "lg-"
KEY_BYTES = 32
DISPLAY_CHARS = 8  # random characters kept for display after the prefix
# The one list of budget periods (keys, teams, the admin API, the CLI, the budget counters).
BudgetPeriod = Literal["daily", "weekly", "monthly", "total"]
BUDGET_PERIODS: tuple[str, ...] = get_args(BudgetPeriod)
# Fields a caller may set on create and change with PATCH.
EDITABLE = (
    "name",
    "user",
    "team",
    "models",
    "rpm",
    "tpm",
    "max_parallel_requests",
    "max_budget_usd",
    "budget_period",
    "expires_at",
    "metadata",
)
_COLUMN = {"user": "user_id", "team": "team_id"}


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def display_prefix(token: str) -> str:
    return token[: len(KEY_PREFIX) + DISPLAY_CHARS]


def display_last4(token: str) -> str:
    return token[-4:]


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A stored key as the application sees it: never the plaintext, never the hash."""

    id: str
    key_prefix: str
    name: str
    key_last4: str | None = None  # absent on keys made before migration 0007
    user: str | None = None
    team: str | None = None
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel_requests: int | None = None
    max_budget_usd: float | None = None
    budget_period: str | None = None
    expires_at: dt.datetime | None = None
    metadata: dict[str, Any] | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    revoked: bool = False
    revoked_at: dt.datetime | None = None

    @classmethod
    def from_db(cls, row: Any) -> "KeyRow":
        m = row._mapping
        return cls(
            id=m["id"],
            key_prefix=m["key_prefix"],
            name=m["name"],
            key_last4=m["key_last4"],
            user=m["user_id"],
            team=m["team_id"],
            models=list(m["models"]) if m["models"] else None,
            rpm=m["rpm"],
            tpm=m["tpm"],
            max_parallel_requests=m["max_parallel_requests"],
            max_budget_usd=m["max_budget_usd"],
            budget_period=m["budget_period"],
            expires_at=aware(m["expires_at"]),
            metadata=m["metadata"],
            created_at=aware(m["created_at"]),
            updated_at=aware(m["updated_at"]),
            last_used_at=aware(m["last_used_at"]),
            revoked=bool(m["revoked"]),
            revoked_at=aware(m["revoked_at"]),
        )

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires_at is not None and (now or utcnow()) >= self.expires_at

    def principal(self) -> Principal:
        return Principal(
            key_id=self.id,
            user=self.user,
            team=self.team,
            models=frozenset(self.models) if self.models else None,
            rpm=self.rpm,
            tpm=self.tpm,
            max_parallel_requests=self.max_parallel_requests,
            max_budget_usd=self.max_budget_usd,
            budget_period=self.budget_period,
        )

    def public(self) -> dict[str, Any]:
        """The JSON view for the admin API and the CLI."""
        out: dict[str, Any] = {"object": "api_key"}
        for name in self.__slots__:  # type: ignore[attr-defined]
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, dt.datetime) else value
        return out


def _values(fields: dict[str, Any]) -> dict[str, Any]:
    values = {_COLUMN.get(k, k): v for k, v in fields.items() if k in EDITABLE}
    if "models" in values and not values["models"]:
        values["models"] = None  # empty: every model
    return values


class KeyRepository:
    """Keys in SQL, for the admin API and the CLI (not the request path)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, **fields: Any) -> tuple[KeyRow, str]:
        token = generate_key()
        now = utcnow()
        key_id = "key_" + secrets.token_hex(8)
        values = {
            **_values(fields),
            "id": key_id,
            "key_hash": hash_key(token),
            "key_prefix": display_prefix(token),
            "key_last4": display_last4(token),
            "created_at": now,
            "revoked": False,
        }
        async with self.store.begin() as conn:
            await conn.execute(api_keys.insert().values(**values))
        row = await self.get(key_id)
        assert row is not None
        return row, token

    async def get(self, key_id: str) -> KeyRow | None:
        async with self.store.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).first()
        return KeyRow.from_db(row) if row else None

    async def by_hash(self, key_hash: str) -> KeyRow | None:
        async with self.store.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash))).first()
        return KeyRow.from_db(row) if row else None

    async def hash_of(self, key_id: str) -> str | None:
        """The stored SHA-256 of a key's secret (for an edge's key cache: lockgate/edge_keys.py)."""
        async with self.store.connect() as conn:
            return (await conn.execute(sa.select(api_keys.c.key_hash).where(api_keys.c.id == key_id))).scalar()

    async def with_hashes(self, after: str = "", limit: int = 1000) -> list[tuple[KeyRow, str]]:
        """Keys with their stored SHA-256, by id, one page after ``after`` (the edge back-fill)."""
        query = sa.select(api_keys).where(api_keys.c.id > after).order_by(api_keys.c.id).limit(limit)
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(KeyRow.from_db(r), r.key_hash) for r in rows]

    async def list(
        self,
        *,
        user: str | None = None,
        team: str | None = None,
        include_revoked: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[KeyRow]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id).limit(limit).offset(offset)
        if user is not None:
            query = query.where(api_keys.c.user_id == user)
        if team is not None:
            query = query.where(api_keys.c.team_id == team)
        if not include_revoked:
            query = query.where(api_keys.c.revoked == sa.false())
        async with self.store.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [KeyRow.from_db(r) for r in rows]

    async def update(self, key_id: str, **fields: Any) -> KeyRow | None:
        values = _values(fields)
        if values:
            values["updated_at"] = utcnow()
            async with self.store.begin() as conn:
                await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**values))
        return await self.get(key_id)

    async def revoke(self, key_id: str) -> KeyRow | None:
        now = utcnow()
        async with self.store.begin() as conn:
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked == sa.false())
                .values(revoked=True, revoked_at=now, updated_at=now)
            )
        return await self.get(key_id)

    async def rotate(self, key_id: str) -> tuple[KeyRow, str] | None:
        """A new secret for the same key (same id, limits and history); the old secret stops working."""
        token = generate_key()
        async with self.store.begin() as conn:
            result = await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked == sa.false())
                .values(
                    key_hash=hash_key(token),
                    key_prefix=display_prefix(token),
                    key_last4=display_last4(token),
                    updated_at=utcnow(),
                )
            )
        if result.rowcount != 1:
            return None
        row = await self.get(key_id)
        return (row, token) if row else None

    async def touch(self, key_ids: Iterable[str], when: dt.datetime) -> None:
        ids = list(key_ids)
        if ids:
            async with self.store.begin() as conn:
                await conn.execute(api_keys.update().where(api_keys.c.id.in_(ids)).values(last_used_at=when))


class VirtualKeys(CachedLookup[KeyRow]):
    """The hot-path lookup: a token → its Principal, from the cache when fresh."""

    def __init__(
        self,
        repo: KeyRepository,
        ttl_s: float,
        *,
        max_entries: int = 100_000,
        max_negative: int = 10_000,
        touch_interval_s: float = 10.0,
    ) -> None:
        super().__init__(ttl_s, max_entries=max_entries, max_negative=max_negative)  # cache keys: hashes
        self.repo = repo
        self._used: set[str] = set()
        self._toucher = Ticker(self.flush, touch_interval_s, "lockgate-key-touch", error_event="key_touch_failed")

    async def authenticate(self, token: str) -> Principal:
        key_hash = hash_key(token)
        now = time.monotonic()
        entry = self._cache.get(key_hash)
        if entry is None or entry.deadline <= now:
            if self._negative.get(key_hash, 0.0) > now:
                raise AuthenticationFailed("Incorrect API key provided.")
            entry = await self._load(key_hash, entry, now)
        row = entry.row
        if row is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        if row.revoked:
            raise AuthenticationFailed("This API key has been revoked.")
        if row.is_expired():
            raise AuthenticationFailed("This API key has expired.")
        self._note_used(row.id)
        assert entry.principal is not None
        return entry.principal

    async def _fetch(self, cache_key: str) -> KeyRow | None:
        return await self.repo.by_hash(cache_key)

    def _make_entry(self, row: KeyRow | None, deadline: float) -> Entry:
        return Entry(deadline, row, row.principal() if row else None)

    # --- last_used_at, in batches off the request path ---------------------------------

    def _note_used(self, key_id: str) -> None:
        self._used.add(key_id)
        if not self._toucher.running:
            self._toucher.start()

    async def flush(self) -> None:
        used, self._used = self._used, set()
        try:
            await self.repo.touch(used, utcnow())
        except Exception as err:
            log.warning("key_touch_failed", error=type(err).__name__, keys=len(used))

    async def aclose(self) -> None:
        await self._toucher.stop()
        await self.flush()
