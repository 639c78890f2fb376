"""The event loop's lateness: behind while a long turn holds it, caught up after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from app.infra.loop_lag import LoopLag

THRESHOLD_S = 0.05


def hold_the_loop(seconds: float) -> None:
    """One turn of the loop that takes `seconds`, as a burst of work would."""
    time.sleep(seconds)


@pytest.fixture
async def lag() -> AsyncIterator[LoopLag]:
    monitor = LoopLag(THRESHOLD_S, interval_s=0.005, hold_s=0.0)
    monitor.start()
    yield monitor
    monitor.stop()


async def test_a_loop_that_keeps_up_is_not_behind(lag: LoopLag) -> None:
    await asyncio.sleep(0.1)

    assert not lag.behind
    assert lag.lag_s < THRESHOLD_S


async def test_a_loop_held_by_one_long_turn_is_behind_before_the_sample_can_run(
    lag: LoopLag,
) -> None:
    await asyncio.sleep(0.01)
    hold_the_loop(3 * THRESHOLD_S)

    assert lag.behind


async def test_a_late_sample_is_reported_and_the_next_timely_one_clears_behind() -> None:
    seen: list[float] = []
    caught_up = asyncio.Event()

    def on_sample(lag_s: float) -> None:
        seen.append(lag_s)
        if lag_s <= THRESHOLD_S and max(seen) > THRESHOLD_S:
            caught_up.set()

    monitor = LoopLag(THRESHOLD_S, interval_s=0.005, hold_s=0.0, on_sample=on_sample)
    monitor.start()
    try:
        await asyncio.sleep(0.01)
        hold_the_loop(3 * THRESHOLD_S)
        await asyncio.wait_for(caught_up.wait(), 2)

        assert max(seen) > THRESHOLD_S
        assert not monitor.behind
    finally:
        monitor.stop()


async def test_behind_lasts_for_the_hold_after_the_last_late_sample() -> None:
    threshold_s, hold_s = 0.1, 0.3
    late: list[float] = []

    def on_sample(lag_s: float) -> None:
        if lag_s > threshold_s:
            late.append(time.monotonic())

    monitor = LoopLag(threshold_s, interval_s=0.005, hold_s=hold_s, on_sample=on_sample)
    monitor.start()
    try:
        await asyncio.sleep(0.01)
        hold_the_loop(3 * threshold_s)
        await asyncio.sleep(0.1)  # timely samples again, within the hold

        assert late
        assert monitor.behind
        await asyncio.sleep(late[-1] + hold_s + 0.1 - time.monotonic())
        assert not monitor.behind
    finally:
        monitor.stop()


async def test_a_stopped_monitor_samples_no_more() -> None:
    seen: list[float] = []
    monitor = LoopLag(THRESHOLD_S, interval_s=0.005, on_sample=seen.append)
    monitor.start()
    await asyncio.sleep(0.03)
    monitor.stop()
    count = len(seen)
    await asyncio.sleep(0.03)

    assert count > 0
    assert len(seen) == count
    assert not monitor.behind
