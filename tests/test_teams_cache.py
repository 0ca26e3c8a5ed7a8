"""The team cache on SQLite and PostgreSQL: one database read per team per TTL (misses too), the
principal enriched once per cached key, invalidation on this replica, and the migration."""

from __future__ import annotations

import asyncio

from lockgate.auth.principal import Principal
from lockgate.auth.teams import TeamRepository, TeamRow, Teams
from lockgate.store import Store
from tests.dbs import db_url  # noqa: F401


class CountingTeams(Teams):
    """The real cache, counting the reads that reach the database."""

    lookups = 0

    async def _fetch(self, cache_key: str) -> TeamRow | None:
        self.lookups += 1
        return await super()._fetch(cache_key)


async def test_one_read_per_team_per_ttl_and_invalidation(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        repo = TeamRepository(store)
        teams = CountingTeams(repo, ttl_s=60)
        member = Principal(key_id="k1", team="red", max_budget_usd=9.0)
        # No record yet: the principal is returned as is, and the miss is cached.
        assert await teams.attach(member) is member
        await asyncio.gather(*(teams.attach(member) for _ in range(50)))
        assert teams.lookups == 1
        assert await teams.attach(Principal(key_id="master")) is not None and teams.lookups == 1  # no team: no read

        await repo.create("red", max_budget_usd=2.5, budget_period="weekly", rpm=7, tpm=900)
        assert await teams.attach(member) is member  # the miss is still cached…
        teams.invalidate("red")  # …until this replica drops it
        enriched = await teams.attach(member)
        assert (enriched.team_max_budget_usd, enriched.team_budget_period, enriched.team_rpm, enriched.team_tpm) == (
            2.5,
            "weekly",
            7,
            900,
        )
        assert enriched.max_budget_usd == 9.0 and enriched.key_id == "k1"  # the key's own fields stay
        assert await teams.attach(member) is enriched  # built once per cached principal
        assert teams.lookups == 2

        # A change elsewhere shows after the TTL; invalidate() makes it immediate here.
        await repo.update("red", max_budget_usd=None, budget_period=None)
        assert (await teams.attach(member)).team_max_budget_usd == 2.5
        teams.invalidate("red")
        cleared = await teams.attach(member)
        assert cleared.team_max_budget_usd is None and cleared.team_budget_period is None and cleared.team_rpm == 7

        assert [t.id for t in await repo.list()] == ["red"]
        assert (await repo.delete("red")) is not None and await repo.get("red") is None
        teams.invalidate("red")
        assert await teams.attach(member) is member
    finally:
        await store.aclose()


async def test_zero_ttl_reads_every_time(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        repo = TeamRepository(store)
        teams = CountingTeams(repo, ttl_s=0)
        await repo.create("blue", rpm=3)
        member = Principal(key_id="k", team="blue")
        assert (await teams.attach(member)).team_rpm == 3
        await repo.update("blue", rpm=4)
        assert (await teams.attach(member)).team_rpm == 4
        assert teams.lookups == 2
    finally:
        await store.aclose()


async def test_migration_down_and_up(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        assert await store.current() == "0009_usage_rollups"
        await store.downgrade("0002_usage")
        assert await store.current() == "0002_usage"
    finally:
        await store.aclose()
    store = await Store(db_url).open()  # opening applies the migrations again
    try:
        assert await store.current() == "0009_usage_rollups"
        assert await TeamRepository(store).list() == []
    finally:
        await store.aclose()
