"""Delivered and read watermarks: forward only, clamped, recorded, and told to those concerned.

A move is pushed to the reader's other connections and to the members whose messages it
passed, never to the whole room: in a large group that would be quadratic.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from app import schemas
from app.domain import cursors, pushes, views
from app.domain.access import require_member
from app.domain.events import UserFrame
from app.domain.limits import Limits
from app.domain.ports import Actor, Work
from app.errors import MessageNotFound, RoomNotFound, ValidationFailed
from app.infra.db.queries import members, messages, receipts

Kind = Literal["delivered", "read"]


async def mark(
    work: Work,
    actor: Actor,
    room_id: uuid.UUID,
    *,
    delivered: int = 0,
    read: int = 0,
) -> schemas.Watermarks:
    """Move the actor's watermarks up to `delivered` / `read` (read implies delivered)."""
    if delivered < 0 or read < 0:
        raise ValidationFailed("seq must not be negative")
    moved = await members.move_watermarks(work.session, room_id, actor.user_id, delivered, read)
    if moved is None:
        raise RoomNotFound("no such room")
    before, after = moved
    at = datetime.now(UTC)
    moves: dict[Kind, tuple[int, int]] = {}
    for kind in ("delivered", "read"):
        old, new = before[f"{kind}_seq"], after[f"{kind}_seq"]
        if new > old:
            moves[kind] = (old, new)
    await receipts.record(
        work.session, room_id, actor.user_id, {k: new for k, (_, new) in moves.items()}, at
    )
    for kind, (old, new) in moves.items():
        senders = await messages.senders_between(work.session, room_id, old, new)
        targets = (actor.user_id, *sorted(senders - {actor.user_id}))
        frame = pushes.receipt(str(room_id), actor.user_id, kind, new, at)
        work.log.emit(UserFrame(targets, frame, skip_connection=work.connection_id))
    return views.watermarks(after)


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
    rows = await receipts.recipients_status(
        work.session, room_id, row["seq"], row["sender_id"], after_user, limit
    )
    items = [
        schemas.Receipt(user_id=r["user_id"], delivered_at=r["delivered_at"], read_at=r["read_at"])
        for r in rows
    ]
    next_cursor = cursors.encode(items[-1].user_id) if len(items) == limit else None
    return schemas.ReceiptPage(items=items, next_cursor=next_cursor)
