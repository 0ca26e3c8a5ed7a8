"""The in-process cache in front of the store that virtual keys and teams share (auth/keys.py, auth/teams.py).

The hot path must not read the database per request: what a replica read about
a key or a team is kept for `auth.key_cache_ttl_s`, and a change made through
the admin API drops it at once on the replica that made it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog

from lockgate.auth.principal import Principal
from lockgate.errors import KeyStoreUnavailable

log = structlog.get_logger("lockgate.auth.keys")


@dataclass(slots=True)
class Entry:
    deadline: float  # monotonic seconds
    row: Any  # a KeyRow, a TeamRow…; None: known not to exist
    principal: Principal | None = field(default=None)


R = TypeVar("R")


class CachedLookup(Generic[R]):
    """Rows read from the store, cached in process: what keys and teams (auth/teams.py) share.

    Positive entries live `ttl_s`; misses are cached too, in bounded memory; one
    database read per cache key at a time, however many requests want it; when
    the store fails, a stale entry is served rather than failing everyone, and
    an entry never read gets 503. Subclasses say how to read a row (`_fetch`).
    """

    def __init__(self, ttl_s: float, *, max_entries: int, max_negative: int) -> None:
        self.ttl_s = ttl_s
        self._cache: OrderedDict[str, Entry] = OrderedDict()
        self._negative: OrderedDict[str, float] = OrderedDict()  # cache key → deadline
        self._max_entries = max_entries
        self._max_negative = max_negative
        self._key_of: dict[str, str] = {}  # row id → cache key, to drop an entry by id
        self._inflight: dict[str, asyncio.Future[R | None]] = {}

    async def _fetch(self, cache_key: str) -> R | None:
        raise NotImplementedError

    def _make_entry(self, row: R | None, deadline: float) -> Entry:
        return Entry(deadline, row)

    async def _load(self, cache_key: str, stale: Entry | None, now: float) -> Entry:
        # One database read per key at a time, however many requests arrive with it.
        pending = self._inflight.get(cache_key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._inflight[cache_key] = pending
            try:
                row = await self._fetch(cache_key)
                pending.set_result(row)
            except Exception as err:
                pending.set_exception(err)
                pending.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            finally:
                del self._inflight[cache_key]
        try:
            row = await asyncio.shield(pending)
        except Exception as err:
            if stale is not None:
                # The store is down: a row we knew a moment ago keeps working rather than failing everyone.
                log.warning("key_store_error_serving_cached", error=type(err).__name__)
                return stale
            log.error("key_store_error", error=type(err).__name__)
            raise KeyStoreUnavailable("The key store is unavailable; try again shortly.") from None
        return self._remember(cache_key, row, now)

    def _remember(self, cache_key: str, row: R | None, now: float) -> Entry:
        entry = self._make_entry(row, now + self.ttl_s)
        if self.ttl_s <= 0:
            return entry
        if row is None:
            self._negative[cache_key] = entry.deadline
            self._negative.move_to_end(cache_key)
            while len(self._negative) > self._max_negative:
                self._negative.popitem(last=False)
            return entry
        row_id: str = row.id  # type: ignore[attr-defined]
        self._cache[cache_key] = entry
        self._cache.move_to_end(cache_key)
        self._key_of[row_id] = cache_key
        while len(self._cache) > self._max_entries:
            old_key, old = self._cache.popitem(last=False)
            if old.row is not None and self._key_of.get(old.row.id) == old_key:
                del self._key_of[old.row.id]
        return entry

    def invalidate(self, row_id: str) -> None:
        """Forget a row at once (revoked, rotated or changed on this replica)."""
        cache_key = self._key_of.pop(row_id, None)
        if cache_key is not None:
            self._cache.pop(cache_key, None)
