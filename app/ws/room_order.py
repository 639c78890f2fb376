"""New messages pushed in `seq` order per room, on one instance.

A room's messages reach an instance by two roads: one committed here is delivered at
once, one committed on another instance comes through Redis a moment later. With
members on both, a member here could get 9 (sent here) before 8 (sent just before on the
other instance, its publish still on the way), although 8 was acknowledged to its sender
before 9 was even sent. So each room remembers the next `seq` this instance expects, and
a message past it waits for those before it, going out the moment they have come.

A gap that does not fill within `hold_s` (a publish lost while Redis was away, after
which every client is told to `sync` anyway) releases what waits, in order: a message is
held back for a while at most, never lost. A message below the expected `seq` (one that
came after that release, or was sent before this instance followed the room) goes out at
once. The first message an instance sees in a room sets where it starts. The room's
other frames (an edit, a member added) carry no new `seq`: they go out at once, unless
something waits, and then right behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Room(Generic[T]):
    __slots__ = ("held", "next_seq", "timer")

    def __init__(self, next_seq: int) -> None:
        self.next_seq = next_seq
        # By seq: the message, then the room's other frames that came after it while it
        # waited (an edit of it, say), which must not overtake it.
        self.held: dict[int, list[T]] = {}
        self.timer: asyncio.TimerHandle | None = None


class RoomOrder(Generic[T]):
    def __init__(
        self, hold_s: float, release: Callable[[T], None], on_held: Callable[[], None]
    ) -> None:
        self._hold_s = hold_s
        self._release = release
        self._on_held = on_held
        self._rooms: dict[str, _Room[T]] = {}

    def arrive(self, room_id: str, seq: int | None, item: T) -> None:
        """Release `item` now, unless a message before it has yet to come. `seq` is a new
        message's; any other frame of the room (None) waits only behind what waits."""
        room = self._rooms.get(room_id)
        if seq is None:
            if room is not None and room.held:
                room.held[max(room.held)].append(item)
            else:
                self._release(item)
        elif room is None:
            self._rooms[room_id] = _Room(seq + 1)
            self._release(item)
        elif seq < room.next_seq:
            self._release(item)
        elif seq == room.next_seq:
            room.next_seq += 1
            self._release(item)
            self._release_following(room)
        else:
            room.held[seq] = [item]
            self._on_held()
            if room.timer is None:
                loop = asyncio.get_running_loop()
                room.timer = loop.call_later(self._hold_s, self._give_up_waiting, room_id)

    def forget(self, room_id: str) -> None:
        """Nobody here follows the room any more: what waits has no one to go to."""
        room = self._rooms.pop(room_id, None)
        if room is not None and room.timer is not None:
            room.timer.cancel()

    def _release_following(self, room: _Room[T]) -> None:
        while (items := room.held.pop(room.next_seq, None)) is not None:
            room.next_seq += 1
            self._release_all(items)
        if not room.held and room.timer is not None:
            room.timer.cancel()
            room.timer = None

    def _give_up_waiting(self, room_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        room.timer = None
        held, room.held = room.held, {}
        for seq in sorted(held):
            room.next_seq = seq + 1
            self._release_all(held[seq])

    def _release_all(self, items: list[T]) -> None:
        for item in items:
            self._release(item)
