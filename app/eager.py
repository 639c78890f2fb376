"""Starting a coroutine at once, up to its first wait, and then on as a task.

`asyncio.create_task` only schedules a coroutine: its first step runs on a later turn of
the event loop, after everything already queued. A write lane that starts its next
statement while it answers the last batch needs the statement sent now, so that
PostgreSQL works on it while the event loop's thread does the answering. Python 3.12's
eager tasks do this; the service runs on 3.11 too, hence this small equivalent.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def start_now(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run `coro` here until it first waits, then on as a task; its outcome is the
    future's (also when it ends or fails before waiting at all)."""
    loop = asyncio.get_running_loop()
    try:
        awaited = coro.send(None)
    except StopIteration as done:
        finished: asyncio.Future[T] = loop.create_future()
        finished.set_result(done.value)
        return finished
    except BaseException as exc:
        failed: asyncio.Future[T] = loop.create_future()
        failed.set_exception(exc)
        return failed
    return loop.create_task(_resume(coro, awaited))


async def _resume(coro: Coroutine[Any, Any, T], awaited: Any) -> T:
    result: T = await _carry_on(coro, awaited)
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
