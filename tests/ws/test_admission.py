"""The connect gate (`app.ws.admission`): so many setups at once, so many waiting, and
beyond that a socket is turned away."""

from __future__ import annotations

import asyncio

from app.ws.admission import ConnectGate


async def test_a_setup_beyond_the_concurrency_waits_for_a_free_turn() -> None:
    gate = ConnectGate(concurrency=1, queue=4)
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with gate.turn():
            order.append("first in")
            await release.wait()
            order.append("first out")

    async def second() -> None:
        async with gate.turn():
            order.append("second in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await asyncio.sleep(0.01)
    assert order == ["first in"]
    release.set()
    async with asyncio.timeout(1):
        await asyncio.gather(*tasks)
    assert order == ["first in", "first out", "second in"]


async def test_the_gate_is_full_only_when_no_turn_is_free_and_the_line_is_at_its_limit() -> None:
    gate = ConnectGate(concurrency=1, queue=1)
    assert not gate.full
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.turn():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    assert not gate.full  # the one turn is taken, nobody waits yet
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    assert gate.full
    release.set()
    async with asyncio.timeout(1):
        await asyncio.gather(holder, waiter)
    assert not gate.full
