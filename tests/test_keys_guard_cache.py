"""The brute-force guard (pure logic, controllable clock) and the key cache on a real database."""

from __future__ import annotations

import asyncio

import pytest

from lockgate.auth import Authenticator
from lockgate.auth.guard import FailureGuard
from lockgate.auth.keys import KeyRepository, KeyRow, VirtualKeys, hash_key
from lockgate.config import AuthConfig
from lockgate.errors import AuthenticationFailed, TooManyAuthFailures
from lockgate.store import Store
from tests.dbs import db_url  # noqa: F401

# --- the guard -------------------------------------------------------------------


def test_guard_refuses_after_the_limit_and_forgives_with_time() -> None:
    now = [10.0]
    guard = FailureGuard(5, clock=lambda: now[0])
    for _ in range(5):
        guard.check("1.2.3.4")
        guard.failed("1.2.3.4")
    with pytest.raises(TooManyAuthFailures) as err:
        guard.check("1.2.3.4")
    assert err.value.status == 429 and err.value.retry_after_s and err.value.retry_after_s >= 1
    guard.check("5.6.7.8")  # another address is unaffected
    now[0] += err.value.retry_after_s + 0.01
    guard.check("1.2.3.4")  # the sliding estimate has dropped below the limit


def test_guard_slides_over_window_boundaries() -> None:
    now = [59.0]
    guard = FailureGuard(10, clock=lambda: now[0])
    for _ in range(8):
        guard.failed("a")
    now[0] = 61.0  # just into the next window: the previous 8 still weigh ~98% (7.9)
    guard.check("a")
    for _ in range(3):
        guard.failed("a")
    with pytest.raises(TooManyAuthFailures):
        guard.check("a")
    now[0] = 150.0  # two windows on: forgotten
    guard.check("a")


def test_guard_memory_is_bounded() -> None:
    guard = FailureGuard(3, max_clients=100, clock=lambda: 0.0)
    for i in range(10_000):
        guard.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(guard) == 100


async def test_authenticator_counts_failures_not_missing_credentials() -> None:
    auth = Authenticator(AuthConfig.model_validate({"master_key": "sk-master-0123456789", "max_failures_per_minute": 3}))
    for _ in range(10):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate({}, "9.9.9.9")
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate({"authorization": "Bearer sk-guess"}, "9.9.9.9")
    with pytest.raises(TooManyAuthFailures):  # even the right key: no oracle while blocked
        await auth.authenticate({"authorization": "Bearer sk-master-0123456789"}, "9.9.9.9")
    assert (await auth.authenticate({"authorization": "Bearer sk-master-0123456789"}, "8.8.8.8")).is_admin


# --- the key cache -----------------------------------------------------------------


class CountingRepo(KeyRepository):
    """The real repository, counting the lookups that reach the database."""

    lookups = 0

    async def by_hash(self, key_hash: str) -> KeyRow | None:
        self.lookups += 1
        return await super().by_hash(key_hash)


async def test_hot_path_reads_the_database_once_per_ttl(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        repo = CountingRepo(store)
        keys = VirtualKeys(repo, ttl_s=60, max_negative=50)
        row, token = await repo.create(name="hot", models=["m"], rpm=5)
        principal = await keys.authenticate(token)
        assert principal.key_id == row.id and principal.models == frozenset({"m"}) and principal.rpm == 5
        await asyncio.gather(*(keys.authenticate(token) for _ in range(200)))
        assert repo.lookups == 1

        # Concurrent first sightings of one key share one read.
        _, other = await repo.create(name="burst")
        await asyncio.gather(*(keys.authenticate(other) for _ in range(50)))
        assert repo.lookups == 2

        # Unknown keys: cached as unknown, in bounded memory.
        for i in range(200):
            with pytest.raises(AuthenticationFailed):
                await keys.authenticate(f"lg-unknown-{i}")
        with pytest.raises(AuthenticationFailed):
            await keys.authenticate("lg-unknown-199")
        assert repo.lookups == 2 + 200
        assert len(keys._negative) == 50

        # Revocation elsewhere is seen after the TTL; here, invalidate() makes it immediate.
        await repo.revoke(row.id)
        assert (await keys.authenticate(token)).key_id == row.id  # still cached
        keys.invalidate(row.id)
        with pytest.raises(AuthenticationFailed, match="revoked"):
            await keys.authenticate(token)

        # last_used_at is written in a batch, off the request path.
        await keys.flush()
        used = await repo.get(row.id)
        assert used is not None and used.last_used_at is not None
        await keys.aclose()
        assert hash_key(token) not in repr(used.public())
    finally:
        await store.aclose()


async def test_a_cached_key_is_refused_once_it_expires(db_url: str) -> None:
    import datetime as dt

    store = await Store(db_url).open()
    try:
        repo = CountingRepo(store)
        keys = VirtualKeys(repo, ttl_s=60)  # the cache lifetime far outlives the key
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.6)
        row, token = await repo.create(name="short-lived", expires_at=soon)
        assert (await keys.authenticate(token)).key_id == row.id
        assert (await keys.authenticate(token)).key_id == row.id and repo.lookups == 1  # served from the cache
        await asyncio.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
        with pytest.raises(AuthenticationFailed, match="expired"):
            await keys.authenticate(token)
        assert repo.lookups == 1  # refused by the cached entry itself, not by a fresh read
        await keys.aclose()
    finally:
        await store.aclose()


async def test_zero_ttl_always_reads(db_url: str) -> None:
    store = await Store(db_url).open()
    try:
        repo = CountingRepo(store)
        keys = VirtualKeys(repo, ttl_s=0)
        row, token = await repo.create(name="nocache")
        await keys.authenticate(token)
        await repo.revoke(row.id)
        with pytest.raises(AuthenticationFailed):
            await keys.authenticate(token)
        assert repo.lookups == 2
        await keys.aclose()
    finally:
        await store.aclose()


async def test_store_outage_serves_known_keys_and_refuses_unknown_with_503(tmp_path) -> None:
    store = await Store(f"sqlite:///{tmp_path / 'k.db'}").open()
    repo = KeyRepository(store)
    keys = VirtualKeys(repo, ttl_s=0.01)
    _, token = await repo.create(name="survivor")
    await keys.authenticate(token)
    await store.aclose()
    # Break the database under the running cache: the table is gone.
    broken = await Store(f"sqlite:///{tmp_path / 'k.db'}").open()
    await broken.downgrade("base")
    keys.repo = KeyRepository(broken)
    await asyncio.sleep(0.02)  # the cached entry is now stale
    assert (await keys.authenticate(token)).key_id  # served from the stale entry
    with pytest.raises(Exception) as err:
        await keys.authenticate("lg-never-seen-before")
    assert getattr(err.value, "status", None) == 503
    await broken.aclose()
