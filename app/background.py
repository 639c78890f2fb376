"""Stopping background tasks for sure.

A cancellation can be swallowed on its way through a library (one arriving as a socket
timeout expires turns into that timeout, which a retry loop then catches), and a task
that ignores it would hang the shutdown. So cancel again until it ends, within a bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

STOP_TIMEOUT_S = 5.0


async def stop(tasks: Iterable[asyncio.Task[object]], timeout_s: float = STOP_TIMEOUT_S) -> None:
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
