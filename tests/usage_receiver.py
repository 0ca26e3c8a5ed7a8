"""A usage receiver for `usage.http_sink`: a real HTTP server on 127.0.0.1 that fails on demand.

It keeps every record by request id (insert-or-ignore, as a receiver must) and
counts deliveries, so a test can tell "arrived exactly once" (stored rows) from
"sent more than once" (a replay after an answer was lost). Faults, one per POST:
``{"status": 503}`` refuses, ``{"hang_s": 2}`` stores the batch only after 2 s
(the sender has timed out by then, and will send it again).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from tests.fakes.server import ThreadedServer


class UsageReceiver:
    def __init__(self, token: str = "receiver-token-0123456789") -> None:
        self.token = token
        self.rows: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, int] = {}
        self.posts: list[dict[str, Any]] = []  # {status, records, idempotency_key}
        self.faults: list[dict[str, Any]] = []
        self.down = False  # every POST answered 503 while set
        self._lock = threading.Lock()
        self._server = ThreadedServer(lambda app: app.router.add_post("/usage", self._usage), "usage-receiver")
        self.port = 0

    def start(self) -> "UsageReceiver":
        self.port = self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/usage"

    async def _usage(self, request: web.Request) -> web.Response:
        body = await request.json()
        records = body["records"]
        key = request.headers.get("idempotency-key")
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return self._answer(401, records, key)
        fault = self.faults.pop(0) if self.faults else None
        if self.down or (fault and "status" in fault):
            return self._answer(fault["status"] if fault else 503, records, key)
        if fault and "hang_s" in fault:
            await asyncio.sleep(fault["hang_s"])  # the sender gave up meanwhile: its answer is lost
        with self._lock:
            for row in records:
                rid = row["request_id"]
                self.deliveries[rid] = self.deliveries.get(rid, 0) + 1
                self.rows.setdefault(rid, row)
        return self._answer(200, records, key)

    def _answer(self, status: int, records: list[dict[str, Any]], key: str | None) -> web.Response:
        self.posts.append({"status": status, "records": len(records), "idempotency_key": key})
        return web.json_response({"accepted": len(records)} if status == 200 else {"error": "no"}, status=status)
