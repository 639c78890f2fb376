"""Catch-up after any gap: every message after the client's cursors, from PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from app import schemas
from app.domain import views, watermarks
from app.domain.ports import Actor, Work
from app.infra.db.queries import members, messages


@dataclass(slots=True)
class RoomCatchUp:
    last_seq: int
    has_more: bool


@dataclass(slots=True)
class SyncResult:
    messages: list[schemas.Message] = field(default_factory=list)
    rooms: dict[uuid.UUID, RoomCatchUp] = field(default_factory=dict)
    # Cursors above the member's delivered watermark: deliveries the caller acknowledges.
    acknowledged: list[watermarks.Mark] = field(default_factory=list)


async def sync(work: Work, actor: Actor, cursors: dict[uuid.UUID, int], limit: int) -> SyncResult:
    """Messages after each cursor, per room in seq order, at most `limit` per room.

    Rooms the client leaves out start at the member's delivered watermark; rooms it is no
    longer a member of are skipped. A cursor also acknowledges delivery up to itself:
    those marks are returned in `acknowledged`, for the watermark writer.
    """
    memberships = {
        row["room_id"]: row for row in await members.memberships_of(work.session, actor.user_id)
    }
    starts = {
        room_id: min(cursors.get(room_id, row["delivered_seq"]), row["last_seq"])
        for room_id, row in memberships.items()
    }
    acknowledged = [
        watermarks.Mark(actor, room_id, delivered=cursor, connection_id=work.connection_id)
        for room_id, cursor in cursors.items()
        if room_id in memberships and cursor > memberships[room_id]["delivered_seq"]
    ]
    rows = await messages.after_cursors(work.session, starts, limit + 1)
    result = SyncResult(acknowledged=acknowledged)
    counts: dict[uuid.UUID, int] = {}
    for row in rows:
        counts[row["room_id"]] = counts.get(row["room_id"], 0) + 1
        if counts[row["room_id"]] <= limit:
            result.messages.append(views.message(row))
    for room_id, row in memberships.items():
        result.rooms[room_id] = RoomCatchUp(
            last_seq=row["last_seq"], has_more=counts.get(room_id, 0) > limit
        )
    return result
