"""An `asyncio.Event` that makes its list of waiters only when someone waits.

`asyncio.Event` allocates a deque (about 0.6 KiB) as it is made. Each socket holds two
events (the protocol's "writable" and the connection's "closed") that are almost never
awaited; with ten thousand idle sockets, their deques were 12 MB.
"""

from __future__ import annotations

import asyncio
from typing import Literal


class Flag(asyncio.Event):
    __slots__ = ("_set", "_waiting")

    def __init__(self, value: bool = False) -> None:
        # asyncio.Event.__init__ is not called: it would make the deque.
        self._set = value
        self._waiting: list[asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        return f"<Flag {'set' if self._set else 'unset'}>"

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiting, self._waiting = self._waiting, None
        for future in waiting or ():
            if not future.done():
                future.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> Literal[True]:
        if self._set:
            return True
        future = asyncio.get_running_loop().create_future()
        if self._waiting is None:
            self._waiting = []
        self._waiting.append(future)
        try:
            await future
            return True
        finally:
            if self._waiting is not None and future in self._waiting:
                self._waiting.remove(future)
