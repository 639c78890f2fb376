"""Stand-ins for what `Fanout` delivers to and asks, for tests of it on a real Redis."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support import new_user_id

WAIT_S = 5.0


@dataclass
class Lag:
    """Stands in for the loop-lag monitor: whether the loop is behind is the test's call."""

    behind: bool = False


@dataclass(eq=False)
class Socket:
    """A local connection that records what is pushed to it."""

    user_id: str
    id: str = field(default_factory=lambda: new_user_id("conn"))
    rooms: set[str] = field(default_factory=set)
    watching: set[str] = field(default_factory=set)
    frames: list[dict[str, Any]] = field(default_factory=list)
    pushed: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, text: str, wire: bytes | None = None) -> None:
        self.frames.append(orjson.loads(text))
        self.pushed.set()

    @property
    def seqs(self) -> list[int]:
        """The seqs of the new messages pushed, in the order they came."""
        return [f["message"]["seq"] for f in self.frames if f["type"] == "message"]

    async def until_seqs(self, count: int) -> list[int]:
        async with asyncio.timeout(WAIT_S):
            while len(self.seqs) < count:
                self.pushed.clear()
                await self.pushed.wait()
        return self.seqs
