"""lockgate.background: the one loop helper every background task uses."""

from __future__ import annotations

import asyncio

import pytest

from lockgate.background import Ticker, stop_task


async def test_ticks_on_the_interval_and_at_once_when_woken() -> None:
    ticks = []
    ticker = Ticker(lambda: ticks.append(1), 0.02, "t")
    ticker.start()
    await asyncio.sleep(0.11)
    assert 3 <= len(ticks) <= 6
    await ticker.stop()
    assert not ticker.running

    woken = Ticker(lambda: ticks.append(2), None, "w")  # no interval: only wake() runs it
    woken.start()
    await asyncio.sleep(0.03)
    assert 2 not in ticks
    woken.wake()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert ticks.count(2) == 1
    await woken.stop()


async def test_a_failing_tick_is_logged_and_the_loop_goes_on() -> None:
    calls = 0

    async def tick() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    ticker = Ticker(tick, None, "lockgate-test", error_event="test_tick_failed")
    ticker.start()
    for _ in range(3):
        ticker.wake()
        for _ in range(3):
            await asyncio.sleep(0)
    assert calls == 3 and ticker.running
    await ticker.stop()


async def test_stop_waits_for_the_task_and_can_restart() -> None:
    started, finished = asyncio.Event(), []

    async def tick() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        finally:
            finished.append(True)

    ticker = Ticker(tick, None, "slow")
    ticker.start()
    ticker.wake()
    await started.wait()
    await ticker.stop()
    assert finished == [True]  # cancelled and awaited: its finally ran before stop() returned
    ticker.start()
    assert ticker.running
    await ticker.stop()
    await ticker.stop()  # twice is harmless


async def test_the_callers_own_cancellation_propagates() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # takes its time to end
            raise

    inner = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    outer = asyncio.get_running_loop().create_task(stop_task(inner))
    await asyncio.sleep(0.01)
    outer.cancel()  # the one stopping is itself cancelled: that must not be swallowed
    with pytest.raises(asyncio.CancelledError):
        await outer
    await stop_task(None)
