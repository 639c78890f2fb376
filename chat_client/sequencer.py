"""Per-room ordering: turns live pushes, sync replays and send acks into one stream per room
that has no gap, no duplicate and ascending `seq`.

Every room's messages are numbered 1, 2, 3 … without gaps by the server, so a client can
tell exactly what it is missing. For each room the sequencer keeps a *cursor*: the
highest seq it has released with nothing missing below it. A message is

- released at once when its seq is `cursor + 1` (and so are any held ones that follow);
- dropped as a duplicate when its seq is at or below the cursor, or already held;
- held when it is further ahead (a gap: something was missed), and the client is told to
  `sync`, whose replay fills the gap.

A room with no cursor yet (new to this client) holds everything until a `sync` ack says
where the room stands; the replay that ack closes starts right after the server-side
delivered watermark, so the lowest held seq marks where the stream begins.

This module does no I/O, so it is tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class _Room:
    cursor: int | None = None
    held: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class Offered:
    """What one offered message led to."""

    released: list[dict[str, Any]] = field(default_factory=list)
    duplicate: bool = False
    needs_sync: bool = False


@dataclass(slots=True)
class SyncOutcome:
    """What a `sync` ack led to: messages released by it, and whether to sync again."""

    released: list[dict[str, Any]] = field(default_factory=list)
    again: bool = False


class Sequencer:
    """Ordering and deduplication by (room_id, seq) for one client."""

    def __init__(self, cursors: Mapping[str, int] | None = None) -> None:
        self._rooms: dict[str, _Room] = {
            room_id: _Room(cursor=seq) for room_id, seq in (cursors or {}).items()
        }
        self.duplicates = 0

    def cursors(self) -> dict[str, int]:
        """The cursor of every room that has one: what a `sync` frame should carry."""
        return {rid: r.cursor for rid, r in self._rooms.items() if r.cursor is not None}

    def cursor(self, room_id: str) -> int | None:
        room = self._rooms.get(room_id)
        return room.cursor if room is not None else None

    def held(self, room_id: str) -> int:
        room = self._rooms.get(room_id)
        return len(room.held) if room is not None else 0

    def forget(self, room_id: str) -> None:
        """Stop tracking a room (the user left it or was removed)."""
        self._rooms.pop(room_id, None)

    def offer(self, message: dict[str, Any]) -> Offered:
        """A message from a push, a replay or a send ack."""
        room_id, seq = str(message["room_id"]), int(message["seq"])
        room = self._rooms.setdefault(room_id, _Room())
        out = Offered()
        if (room.cursor is not None and seq <= room.cursor) or seq in room.held:
            self.duplicates += 1
            out.duplicate = True
            return out
        if room.cursor is None:
            room.held[seq] = message
            out.needs_sync = True
            return out
        if seq == room.cursor + 1:
            room.cursor = seq
            out.released.append(message)
            self._release(room, out.released)
        else:
            room.held[seq] = message
            out.needs_sync = True
        return out

    def after_sync(self, rooms: Mapping[str, Mapping[str, Any]]) -> SyncOutcome:
        """Apply a `sync` ack (`data.rooms`): every message it replayed has been offered
        already, since the server writes them before the ack."""
        out = SyncOutcome()
        for room_id in [r for r in self._rooms if r not in rooms]:
            # Not a member any more (a room joined since has no cursor yet and is kept).
            if self._rooms[room_id].cursor is not None:
                del self._rooms[room_id]
        for room_id, info in rooms.items():
            last_seq, has_more = int(info["last_seq"]), bool(info.get("has_more", False))
            room = self._rooms.setdefault(room_id, _Room())
            if room.cursor is None:
                # The replay began right after the server's delivered watermark, so the
                # lowest held seq is where this room's stream starts.
                start = min(room.held) - 1 if room.held else last_seq
                room.cursor = min(start, last_seq)
            self._release(room, out.released)
            if has_more or room.held:
                out.again = True
        return out

    @staticmethod
    def _release(room: _Room, into: list[dict[str, Any]]) -> None:
        assert room.cursor is not None
        while room.cursor + 1 in room.held:
            room.cursor += 1
            into.append(room.held.pop(room.cursor))

    def rooms(self) -> Iterable[str]:
        return self._rooms.keys()
