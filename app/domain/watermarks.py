"""Delivered and read watermarks: forward only, clamped, recorded, and told to those concerned.

A move is pushed to the reader's other connections and to the members whose messages it
passed, never to the whole room: in a large group that would be quadratic.

A batch writes the marks of one member in one room as one move, whoever asked: several
of their connections, a REST request. Its receipt then skips each connection whose own
frames asked for the whole of it (its ack says as much), and only those: one that asked
for less, for the other watermark, or nothing, did not ask for what the receipt tells.
So no connection is sent its own move, and none misses a move it did not ask for; as if
the marks had been written one by one, lowest first, with the receipts that one move
supersedes left out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app import schemas
from app.domain import cursors, pushes, views
from app.domain.access import require_member
from app.domain.events import UserFrame
from app.domain.lanes import LANES, Lanes, Turn
from app.domain.limits import Limits
from app.domain.ports import Actor, BatchWork, BatchWorkFactory, Work
from app.errors import ChatError, MessageNotFound, RoomNotFound, ValidationFailed
from app.infra.db.queries import batched, messages, receipts

Kind = Literal["delivered", "read"]
KINDS: tuple[Kind, ...] = ("delivered", "read")


@dataclass(frozen=True, slots=True)
class Mark:
    """Move `actor`'s watermarks in a room up to `delivered` / `read`."""

    actor: Actor
    room_id: uuid.UUID
    delivered: int = 0
    read: int = 0
    # The connection whose frame asked (it has its ack, not a receipt); None for REST.
    connection_id: str | None = None


# A member in a room: (room, user).
_Member = tuple[uuid.UUID, str]


async def mark_many(
    work: BatchWork, marks: list[Mark], turn: Turn
) -> list[schemas.Watermarks | ChatError]:
    """Apply many marks in one go: one statement, whatever their number.

    Marks of one member in one room coalesce (the highest wins). Each moved watermark
    writes one receipt row and is pushed to the reader's connections but those that asked
    for the whole move (see above), and to the senders of the messages it passed, at the
    time the database recorded, never this instance's: instances' clocks differ, and a
    batch may wait for its rows.
    """
    targets: dict[_Member, tuple[int, int]] = {}
    for m in marks:
        if m.delivered < 0 or m.read < 0:
            raise ValidationFailed("seq must not be negative")
        key = (m.room_id, m.actor.user_id)
        delivered, read = targets.get(key, (0, 0))
        targets[key] = (max(delivered, m.delivered), max(read, m.read))
    asked = _asked_by_connection(marks)
    after = await batched.raise_watermarks(work.db, targets)
    await turn.stored()
    for (room, user), row in after.items():
        for kind in KINDS:
            new = row[f"{kind}_seq"]
            if new <= row[f"{kind}_before"]:
                continue
            # At least: a mark past the room's last seq, clamped, asked for all of the move.
            skip = tuple(c for c, seqs in asked.get((room, user), {}).items() if seqs[kind] >= new)
            passed = set(row[f"{kind}_senders"])
            frame = pushes.receipt(str(room), user, kind, new, row["at"])
            work.log.emit(UserFrame((user, *sorted(passed - {user})), frame, skip))
    return [
        views.watermarks(after[(m.room_id, m.actor.user_id)])
        if (m.room_id, m.actor.user_id) in after
        else RoomNotFound("no such room")
        for m in marks
    ]


def _asked_by_connection(marks: list[Mark]) -> dict[_Member, dict[str, dict[Kind, int]]]:
    """Per member, and per connection of theirs that marked: the highest each watermark its
    frames asked for. A read asks for that delivery too (read implies delivered): its move
    of the delivered watermark is the connection's own as well."""
    asked: dict[_Member, dict[str, dict[Kind, int]]] = {}
    for m in marks:
        if m.connection_id is None:
            continue
        mine = asked.setdefault((m.room_id, m.actor.user_id), {})
        seqs = mine.setdefault(m.connection_id, {"delivered": 0, "read": 0})
        seqs["delivered"] = max(seqs["delivered"], m.delivered, m.read)
        seqs["read"] = max(seqs["read"], m.read)
    return asked


class WatermarkWriter:
    """Marks from every connection and request, applied in batches by ordered lanes."""

    def __init__(
        self,
        work: BatchWorkFactory,
        *,
        on_batch: Callable[[int], None] = lambda _: None,
        lanes: int = LANES,
    ) -> None:
        self._work = work
        self._lanes: Lanes[Mark, schemas.Watermarks] = Lanes(
            "watermarks", self._apply, lanes=lanes, on_batch=on_batch
        )

    def start(self) -> None:
        self._lanes.start()

    async def stop(self) -> None:
        await self._lanes.stop()

    async def mark(self, mark: Mark) -> schemas.Watermarks:
        return await self.enqueue(mark)

    def enqueue(self, mark: Mark) -> asyncio.Future[schemas.Watermarks]:
        """`mark`, answered by a future instead of awaited (see `Lanes.enqueue`)."""
        return self._lanes.enqueue(mark.room_id, mark)

    async def mark_all(self, marks: list[Mark]) -> None:
        """Several marks at once (a `sync`'s cursors); each one's room keeps its lane."""
        results = await asyncio.gather(*(self.mark(m) for m in marks), return_exceptions=True)
        for result in results:
            # A room left in the meantime simply has nothing left to acknowledge.
            if isinstance(result, BaseException) and not isinstance(result, RoomNotFound):
                raise result

    async def _apply(self, batch: list[Mark], turn: Turn) -> list[schemas.Watermarks | ChatError]:
        async with self._work(in_transaction=False) as work:
            return await mark_many(work, batch, turn)


async def message_receipts(
    work: Work,
    actor: Actor,
    room_id: uuid.UUID,
    message_id: uuid.UUID,
    cursor: str | None,
    limit: int,
    limits: Limits,
) -> schemas.ReceiptPage:
    """For each member the message was sent to: when it was delivered to and read by them."""
    if not 1 <= limit <= limits.max_page_size:
        raise ValidationFailed(f"limit must be between 1 and {limits.max_page_size}")
    await require_member(work.session, room_id, actor.user_id)
    row = await messages.get_message(work.session, room_id, message_id)
    if row is None:
        raise MessageNotFound("no such message in this room")
    after_user = str(cursors.decode(cursor, 1)[0]) if cursor is not None else None
    # One row past the page says whether another page follows (null on the last one).
    rows = await receipts.recipients_status(
        work.session, room_id, row["seq"], row["sender_id"], after_user, limit + 1
    )
    items = [
        schemas.Receipt(user_id=r["user_id"], delivered_at=r["delivered_at"], read_at=r["read_at"])
        for r in rows[:limit]
    ]
    next_cursor = cursors.encode(items[-1].user_id) if len(rows) > limit else None
    return schemas.ReceiptPage(items=items, next_cursor=next_cursor)
