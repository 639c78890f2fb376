"""Starting a coroutine at once, up to its first wait, and then on as a task.

`asyncio.create_task` only schedules a coroutine: its first step runs on a later turn of
the event loop, after everything already queued. A write lane that starts its next
statement while it answers the last batch needs the statement sent now, so that
PostgreSQL works on it while the event loop's thread does the answering. Python 3.12's
eager tasks do this; on 3.11 this module does the same.

The first step runs as the task it continues in, as an eager task's does. What it sets
up may hold on to the current task: an `asyncio.timeout` entered there (asyncpg's, while
it connects) cancels that task when it expires. Run as the caller instead, a connect that
timed out cancelled the write lane that had started the batch, and the lane was gone.
"""

from __future__ import annotations

import asyncio
import sys
import types
from asyncio import tasks
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def start_now(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run `coro` here until it first waits, as the task returned, which carries it on;
    the task's outcome is the coroutine's (also when it ends or fails before waiting)."""
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=loop, eager_start=True)
    first: list[Any] = []  # what the first step yielded, or how it ended
    task = loop.create_task(_resume(coro, first))
    caller = asyncio.current_task(loop)
    if caller is not None:
        tasks._leave_task(loop, caller)
    tasks._enter_task(loop, task)
    try:
        first.append(("waits", coro.send(None)))
    except StopIteration as done:
        first.append(("returned", done.value))
    except BaseException as exc:  # the task re-raises it as its own outcome
        first.append(("raised", exc))
    finally:
        tasks._leave_task(loop, task)
        if caller is not None:
            tasks._enter_task(loop, caller)
    return task


async def _resume(coro: Coroutine[Any, Any, T], first: list[Any]) -> T:
    how, what = first[0]
    if how == "returned":
        result: T = what
        return result
    if how == "raised":
        raise what
    result = await _carry_on(coro, what)
    return result


@types.coroutine
def _carry_on(coro: Coroutine[Any, Any, Any], awaited: Any) -> Generator[Any, Any, Any]:
    """Hand the task what `coro` waits on (it already yielded it once, to `start_now`),
    and from then on pass every result, exception and cancellation through to `coro`:
    what `await coro` would do, for a coroutine that has already started."""
    while True:
        try:
            value = yield awaited
        except BaseException as exc:
            try:
                awaited = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                awaited = coro.send(value)
            except StopIteration as done:
                return done.value
