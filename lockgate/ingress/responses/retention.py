"""The retention purge of stored Responses (`responses.retention_days`): a background Ticker.

Every ``purge_interval_s`` (and once at start-up) it deletes the responses older than
the retention, in batches of ``purge_batch_size``, each its own transaction, until a
batch comes back short. Every worker and replica may run it: a delete of rows another
purge already took deletes nothing, so no coordination is needed.
"""

from __future__ import annotations

import datetime as dt

import structlog

from lockgate.background import Ticker
from lockgate.config import ResponsesConfig
from lockgate.ingress.responses.store import ResponseStore
from lockgate.store.db import utcnow

log = structlog.get_logger("lockgate.responses.retention")

# A tick stops after this many full batches and leaves the rest to the next one, so one
# purge of a huge backlog cannot keep the database busy for minutes on end.
MAX_BATCHES_PER_TICK = 200


class RetentionPurge:
    def __init__(self, store: ResponseStore, config: ResponsesConfig) -> None:
        self.store = store
        self.retention = dt.timedelta(days=config.retention_days)
        self.batch_size = config.purge_batch_size
        self._ticker = Ticker(
            self.purge, config.purge_interval_s, "lockgate-responses-purge", error_event="responses_purge_failed"
        )

    def start(self) -> None:
        self._ticker.start()
        self._ticker.wake()  # the first purge at start-up, not an interval later

    async def aclose(self) -> None:
        await self._ticker.stop()

    async def purge(self) -> int:
        """One pass: delete every expired response, batch by batch; the number deleted."""
        before = utcnow() - self.retention
        total = 0
        for _ in range(MAX_BATCHES_PER_TICK):
            deleted = await self.store.purge(before, self.batch_size)
            total += deleted
            if deleted < self.batch_size:
                break
        if total:
            log.info("responses_purged", deleted=total, older_than=before.isoformat())
        return total
