"""The generator's own lateness: how long its event loop woke past its timer, so a
stalled generator is not mistaken for a slow server."""

from __future__ import annotations

import asyncio
import time

from bench.lateness import Lateness


def _stall_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # the loop runs nothing meanwhile, as in a long turn


async def test_a_blocked_loop_is_reported_as_late() -> None:
    lateness = Lateness(interval_s=0.005)
    await asyncio.sleep(0.02)

    _stall_the_loop(0.06)
    await asyncio.sleep(0.02)

    assert lateness.take() >= 40
    lateness.stop()


async def test_taking_the_figure_starts_a_new_window() -> None:
    lateness = Lateness(interval_s=0.005)
    await asyncio.sleep(0.01)
    _stall_the_loop(0.06)
    await asyncio.sleep(0.02)
    lateness.take()

    await asyncio.sleep(0.05)

    assert lateness.take() < 40
    lateness.stop()
