"""How many new sockets are set up at once, and how many may wait for their turn.

Setting up a socket (presence, its rooms, `hello`) takes a few milliseconds of the event
loop and a database connection. In a reconnect storm thousands arrive at once: set up
all together they would contend for the stores until their setups time out and their
clients retry, which costs more than the setups themselves. So `concurrency` are set up
at a time and up to `queue` wait their turn, holding nothing. Beyond that a socket is
turned away at once with 1013 (try again later): its client backs off and comes back,
instead of waiting past its own timeout for a turn that would then be wasted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ConnectGate:
    def __init__(self, concurrency: int, queue: int) -> None:
        self._turns = asyncio.Semaphore(concurrency)
        self._queue = queue
        self._waiting = 0

    @property
    def full(self) -> bool:
        """No turn is free and the line is as long as allowed."""
        return self._turns.locked() and self._waiting >= self._queue

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        self._waiting += 1
        try:
            await self._turns.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._turns.release()
