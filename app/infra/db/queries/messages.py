"""Messages: insert under the room lock, idempotency lookups, pages by seq, tombstones."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import RowMapping, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.db.tables import Message, table

messages = table(Message)


async def get_message(
    session: AsyncSession, room_id: uuid.UUID, message_id: uuid.UUID, *, lock: bool = False
) -> RowMapping | None:
    stmt = select(messages).where(messages.c.room_id == room_id, messages.c.id == message_id)
    if lock:
        stmt = stmt.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    return (await session.execute(stmt)).mappings().one_or_none()


async def page(
    session: AsyncSession,
    room_id: uuid.UUID,
    *,
    before: int | None,
    after: int | None,
    limit: int,
) -> Sequence[RowMapping]:
    """Up to `limit` messages by seq, returned ascending.

    With `after`, the oldest above it (bounded by `before` if given); otherwise the
    newest below `before` (or the newest of all).
    """
    stmt = select(messages).where(messages.c.room_id == room_id)
    if before is not None:
        stmt = stmt.where(messages.c.seq < before)
    if after is not None:
        stmt = stmt.where(messages.c.seq > after).order_by(messages.c.seq.asc())
        return (await session.execute(stmt.limit(limit))).mappings().all()
    rows = (await session.execute(stmt.order_by(messages.c.seq.desc()).limit(limit))).mappings()
    return list(reversed(rows.all()))


async def edit(session: AsyncSession, message_id: uuid.UUID, body: str) -> RowMapping:
    stmt = (
        update(messages)
        .where(messages.c.id == message_id)
        .values(body=body, edited_at=func.now())
        .returning(*messages.c)
    )
    return (await session.execute(stmt)).mappings().one()


async def tombstone(session: AsyncSession, message_id: uuid.UUID) -> RowMapping:
    """Remove body and attachment for good; the row stays so `seq` keeps no gap."""
    stmt = (
        update(messages)
        .where(messages.c.id == message_id)
        .values(body=None, attachment=None, deleted_at=func.now())
        .returning(*messages.c)
    )
    return (await session.execute(stmt)).mappings().one()


_AFTER_CURSORS = text(
    """
    SELECT m.* FROM unnest(CAST(:rooms AS uuid[]), CAST(:cursors AS bigint[])) AS c(room_id, cur)
    CROSS JOIN LATERAL (
        SELECT * FROM messages
        WHERE messages.room_id = c.room_id AND messages.seq > c.cur
        ORDER BY messages.seq
        LIMIT :per_room
    ) AS m
    ORDER BY m.room_id, m.seq
    """
).columns(*messages.c)


async def after_cursors(
    session: AsyncSession, cursors: dict[uuid.UUID, int], per_room: int
) -> Sequence[RowMapping]:
    """Up to `per_room` messages above each room's cursor, one index range scan per room."""
    if not cursors:
        return []
    rooms = list(cursors)
    result = await session.execute(
        _AFTER_CURSORS,
        {"rooms": rooms, "cursors": [cursors[r] for r in rooms], "per_room": per_room},
    )
    return result.mappings().all()
