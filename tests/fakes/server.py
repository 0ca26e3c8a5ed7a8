"""Serve an aiohttp application on 127.0.0.1 from a thread with its own event loop.

The fakes run in the test's process, so a test scripts them directly (faults,
replies, recorded requests) while the gateway under test is another process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web


class ThreadedServer:
    def __init__(self, add_routes: Callable[[web.Application], None], name: str) -> None:
        self._add_routes = add_routes
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name=name)
        self._runner: web.AppRunner | None = None

    def start(self, port: int = 0) -> int:
        """Start serving; returns the port (a free one when 0)."""
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(port), self._loop).result(10)

    async def _start(self, port: int) -> int:
        app = web.Application()
        self._add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
