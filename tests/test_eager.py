"""`start_now`: a coroutine's first step runs at once, as the task that carries it on."""

from __future__ import annotations

import asyncio

import pytest

from app.eager import start_now

WAIT_S = 2.0


async def test_the_first_step_runs_before_start_now_returns() -> None:
    steps: list[str] = []

    async def work() -> str:
        steps.append("first")
        await asyncio.sleep(0)
        steps.append("second")
        return "done"

    task = start_now(work())

    assert steps == ["first"]
    assert await asyncio.wait_for(task, WAIT_S) == "done"
    assert steps == ["first", "second"]


async def test_the_first_step_runs_as_the_task_that_carries_it_on() -> None:
    seen: list[asyncio.Task[object] | None] = []

    async def work() -> None:
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    caller = asyncio.current_task()
    task = start_now(work())
    assert asyncio.current_task() is caller
    await asyncio.wait_for(task, WAIT_S)

    assert seen == [task, task]


async def test_a_timeout_set_in_the_first_step_ends_the_coroutine_not_its_caller() -> None:
    async def work() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(WAIT_S)

    task = start_now(work())

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, WAIT_S)
    await asyncio.sleep(0.02)  # the caller, still running, is not cancelled either


async def test_a_coroutine_that_ends_without_waiting_gives_its_result() -> None:
    async def work() -> int:
        return 7

    assert await start_now(work()) == 7


async def test_a_coroutine_that_fails_before_waiting_gives_its_exception() -> None:
    async def work() -> None:
        raise LookupError("at once")

    with pytest.raises(LookupError, match="at once"):
        await start_now(work())
