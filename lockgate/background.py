"""Background loops: one small helper instead of the same task loop written out in every module.

``Ticker(tick, interval_s, name)`` runs ``tick`` every ``interval_s`` seconds
(or, with ``interval_s=None``, only when woken), sooner whenever ``wake()`` is
called. A tick that raises is logged and the loop goes on: a bug in a flush
must not end flushing for the life of the process. ``stop()`` cancels the loop
and waits for it; whatever final flush a component needs it does after that.

``stop_task(task)`` is the cancel-and-await on its own, for loops that are
not tickers (a queue consumer, say). Both let a cancellation of the *caller*
propagate: only the stopped task's own CancelledError is swallowed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

log = structlog.get_logger("lockgate.background")

Tick = Callable[[], Awaitable[Any] | Any]


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (its own cancellation is not an error)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we were cancelled while waiting: that must reach our caller
    except Exception:  # the task had already failed: say so, stopping goes on
        log.exception("background_task_failed", task=task.get_name())


class Ticker:
    """Runs ``tick`` every ``interval_s`` (None: only on ``wake()``), logging and surviving its errors."""

    def __init__(self, tick: Tick, interval_s: float | None, name: str, *, error_event: str | None = None) -> None:
        self._tick = tick
        self._is_async = inspect.iscoroutinefunction(tick)
        self.interval_s = interval_s
        self.name = name
        self._error_event = error_event or f"{name}_failed"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Run the next tick now rather than at the end of the interval."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _wait(self) -> None:
        if self.interval_s is None:
            await self._wake.wait()
            return
        try:  # asyncio.timeout, not wait_for: no task per wait, and no lost cancellation
            async with asyncio.timeout(self.interval_s):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _run(self) -> None:
        while True:
            await self._wait()
            self._wake.clear()
            try:
                if self._is_async:
                    await self._tick()
                else:
                    self._tick()
            except Exception:  # CancelledError is not an Exception: stop() still ends the loop
                log.exception(self._error_event, task=self.name)
