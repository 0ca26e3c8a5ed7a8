"""Key events for an edge's key cache (deploy/cloudflare, docs/cloudflare.md): create, change, rotate, revoke.

The admin API calls ``upsert`` / ``revoke`` after the database has the change;
they only append to a queue. A task POSTs what is queued, in order, as::

    {"events": [{"type": "upsert" | "revoke", "key_hash": <sha256 hex>, "key_id": ...,
                 "expires_at": <unix s> | null, "rpm": <int> | null}, ...]}

to ``auth.key_events.url`` (the Worker's internal route, reached from the
container only), retrying with back-off while it fails. Never the key itself:
only its SHA-256, which the edge compares with the hash of what a client sends.

Best effort by design: Lockgate stays the authority on every request, so an
event that never arrives (queue full, process killed) costs only the early
refusal at the edge, never a wrong admission; the loss is logged and counted.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import httpx
import structlog

from lockgate.auth.keys import KeyRow
from lockgate.background import Ticker
from lockgate.config import KeyEventsConfig

log = structlog.get_logger("lockgate.edge_keys")

MAX_PER_POST = 100


class KeyEvents:
    def __init__(self, config: KeyEventsConfig) -> None:
        self.url = config.url
        self.max_queued = config.max_queued
        self.retry_max_s = config.retry_max_s
        headers = {name: value.get_secret_value() for name, value in config.headers.items()}
        self.client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(config.timeout_s), follow_redirects=False)
        self._queue: deque[dict[str, Any]] = deque()
        self._ticker = Ticker(self.flush, 1.0, "lockgate-key-events", error_event="key_events_failed")
        self._retry_at = 0.0
        self._retry_s = 0.0
        self.sent = 0
        self.dropped = 0

    def start(self) -> "KeyEvents":
        self._ticker.start()
        return self

    # --- from the admin API (no I/O) --------------------------------------------------------

    def upsert(self, row: KeyRow, key_hash: str) -> None:
        self._put("revoke" if row.revoked else "upsert", row, key_hash)

    def revoke(self, row: KeyRow, key_hash: str) -> None:
        self._put("revoke", row, key_hash)

    def _put(self, kind: str, row: KeyRow, key_hash: str) -> None:
        if len(self._queue) >= self.max_queued:
            self.dropped += 1
            log.error("key_event_dropped", key_id=row.id, reason="queue full")
            return
        expires = row.expires_at.timestamp() if row.expires_at is not None else None
        self._queue.append({"type": kind, "key_hash": key_hash, "key_id": row.id, "expires_at": expires, "rpm": row.rpm})
        self._ticker.wake()

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- the sender ---------------------------------------------------------------------------

    async def flush(self) -> None:
        while self._queue and time.monotonic() >= self._retry_at:
            batch = [self._queue[i] for i in range(min(MAX_PER_POST, len(self._queue)))]
            try:
                response = await self.client.post(self.url, json={"events": batch})
                ok = 200 <= response.status_code < 300
                error = f"status {response.status_code}"
            except httpx.HTTPError as err:
                ok, error = False, type(err).__name__
            if not ok:
                self._retry_s = min(self.retry_max_s, self._retry_s * 2 or 0.5)
                self._retry_at = time.monotonic() + self._retry_s
                log.warning("key_events_post_failed", error=error, pending=len(self._queue), retry_in_s=self._retry_s)
                return
            for _ in batch:
                self._queue.popleft()
            self.sent += len(batch)
            self._retry_s = 0.0

    async def drain(self, timeout_s: float) -> bool:
        """Send everything queued now, retrying with back-off for up to ``timeout_s`` (the CLI's back-fill)."""
        deadline = time.monotonic() + timeout_s
        while self._queue and time.monotonic() < deadline:
            await self.flush()
            if self._queue:
                await asyncio.sleep(max(0.05, min(self._retry_at, deadline) - time.monotonic()))
        return not self._queue

    async def aclose(self) -> None:
        await self._ticker.stop()
        self._retry_at = 0.0
        await self.flush()  # one last try; the edge catches up on the next change otherwise
        if self._queue:
            log.error("key_events_lost", events=len(self._queue), reason="edge unreachable at shutdown")
        await self.client.aclose()
