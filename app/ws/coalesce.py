"""Frames to one socket within one turn of the event loop leave in one write.

Each write to a socket is a system call, and on loopback the kernel does the peer's
receive work inside it too: about 10 µs, the largest single cost of a pushed frame. A
batch that commits answers and pushes many frames in the same turn, and a socket often
gets several of them (two sends of one client in a batch, an ack next to a receipt).
So a frame joins its socket's pending bytes, and once the turn's callbacks have run
every socket with some is written once. The wait is a turn of the loop, not a timer.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol


class Pending(Protocol):
    def flush_pending(self) -> None: ...


class Coalescer:
    """The sockets of one event loop that have frames waiting for the end of the turn."""

    __slots__ = ("_dirty", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Pending] = []

    def mark(self, socket: Pending) -> None:
        """`socket` has frames waiting: write them after this turn's callbacks."""
        if not self._dirty:
            self._loop.call_soon(self._flush)
        self._dirty.append(socket)

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for socket in dirty:
            socket.flush_pending()


# One per loop: protocols are made by uvicorn, which hands them no object of ours.
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Coalescer] = (
    weakref.WeakKeyDictionary()
)


def coalescer_for(loop: asyncio.AbstractEventLoop) -> Coalescer:
    coalescer = _by_loop.get(loop)
    if coalescer is None:
        coalescer = _by_loop[loop] = Coalescer(loop)
    return coalescer
