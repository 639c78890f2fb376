"""The lightweight event each socket holds twice."""

from __future__ import annotations

import asyncio

from app.ws.flag import Flag


async def test_a_waiter_is_released_when_the_flag_is_set() -> None:
    flag = Flag()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    flag.set()
    assert await asyncio.wait_for(waiter, 1.0) is True


async def test_waiting_on_a_set_flag_returns_at_once() -> None:
    flag = Flag(True)
    assert await asyncio.wait_for(flag.wait(), 1.0) is True


async def test_a_cleared_flag_makes_waiters_wait_again() -> None:
    flag = Flag(True)
    flag.clear()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    flag.set()
    await asyncio.wait_for(waiter, 1.0)


async def test_a_cancelled_waiter_leaves_no_trace() -> None:
    flag = Flag()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert flag._waiting == []
    flag.set()
    assert flag.is_set()
