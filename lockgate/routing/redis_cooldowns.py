"""Cool-downs shared by replicas through Redis (``router.cooldown.backend: redis``).

One key per cooled deployment, ``{redis.key_prefix}cd:{model}/{deployment}``,
expiring when the cool-down ends (Redis' own expiry, so replicas need no agreed
clock). One background task writes this replica's new cool-downs and reads
everyone's remaining TTLs every ``interval_s`` into a local mirror; the request
path only reads the mirror and marks writes pending, so it never waits on Redis.
Each round is one call on the gateway's Redis client, bounded by its deadline
(a Redis that hangs holds the task no longer); when Redis is down the router
keeps working on local health alone.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from lockgate.background import Ticker
from lockgate.redis_client import RedisUnavailable, SharedRedis

log = structlog.get_logger("lockgate.router")


class RedisCooldowns:
    def __init__(self, redis: SharedRedis, prefix: str | None = None, interval_s: float = 0.5) -> None:
        self._shared = redis  # the gateway's one client: its owner closes it
        self._prefix = redis.key("cd") if prefix is None else prefix
        self._keys: list[str] = []
        self._mirror: dict[str, float] = {}
        self._pending: dict[str, int | None] = {}  # key -> ms to cool, or None to clear
        self._clock: Callable[[], float] = lambda: 0.0
        # Writes pending cool-downs at once, and reads everyone's every interval_s.
        self._ticker = Ticker(self.sync, interval_s, "lockgate-cooldowns", error_event="cooldown_sync_failed")
        self._failing = False

    async def start(self, keys: list[str], clock: Callable[[], float]) -> None:
        self._keys, self._clock = list(keys), clock
        await self.sync()  # a replica starting up learns at once what the others cooled down
        self._ticker.start()

    def until(self, key: str) -> float | None:
        return self._mirror.get(key)

    def publish(self, key: str, until: float, seconds: float) -> None:
        self._mirror[key] = max(self._mirror.get(key, 0.0), until)
        if seconds > 0:
            self._pending[key] = max(1, int(seconds * 1000))
            self._ticker.wake()

    def clear(self, key: str) -> None:
        """A deployment answered again: end its shared cool-down early."""
        if self._mirror.pop(key, None) is not None:
            self._pending[key] = None
            self._ticker.wake()

    async def sync(self) -> None:
        """Write pending cool-downs, then read every deployment's remaining TTL."""
        pending, self._pending = self._pending, {}
        try:
            async with self._shared.call(request_path=False) as client:  # off the request path: always try
                async with client.pipeline(transaction=False) as pipe:
                    for key, ms in pending.items():
                        if ms is None:
                            pipe.delete(self._prefix + key)
                        else:
                            pipe.set(self._prefix + key, "1", px=ms)
                    for key in self._keys:
                        pipe.pttl(self._prefix + key)
                    results = await pipe.execute()
        except RedisUnavailable as err:
            for key, ms in pending.items():  # try again next round
                self._pending.setdefault(key, ms)
            if not self._failing:
                log.warning("cooldown_store_unavailable", error=str(err))
            self._failing = True
            return
        if self._failing:
            log.info("cooldown_store_recovered")
        self._failing = False
        now = self._clock()
        for key, ttl in zip(self._keys, results[len(pending) :]):
            if isinstance(ttl, int) and ttl > 0:
                self._mirror[key] = now + ttl / 1000.0
            elif key not in self._pending:
                self._mirror.pop(key, None)

    async def aclose(self) -> None:
        await self._ticker.stop()
        if self._pending:
            await self.sync()
