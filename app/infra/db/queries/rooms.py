"""Rooms: creation, the direct-pair key, the per-room sequence and the caller's room list."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import RowMapping, and_, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.db.tables import Member, Message, Room, table

rooms = table(Room)
members = table(Member)
messages = table(Message)


async def insert_room(
    session: AsyncSession,
    kind: str,
    name: str | None,
    direct_pair: tuple[str, str] | None = None,
) -> RowMapping | None:
    """Insert a room; for a direct pair that already has one, insert nothing and return None."""
    low, high = direct_pair if direct_pair else (None, None)
    stmt = (
        insert(rooms)
        .values(id=uuid.uuid4(), kind=kind, name=name, direct_low=low, direct_high=high)
        .on_conflict_do_nothing()
        .returning(*rooms.c)
    )
    return (await session.execute(stmt)).mappings().one_or_none()


async def find_direct(session: AsyncSession, pair: tuple[str, str]) -> RowMapping | None:
    stmt = select(rooms).where(rooms.c.direct_low == pair[0], rooms.c.direct_high == pair[1])
    return (await session.execute(stmt)).mappings().one_or_none()


async def get_room(session: AsyncSession, room_id: uuid.UUID) -> RowMapping | None:
    return (
        (await session.execute(select(rooms).where(rooms.c.id == room_id))).mappings().one_or_none()
    )


async def lock_room(session: AsyncSession, room_id: uuid.UUID) -> int:
    """Take the room's row lock and return its last_seq.

    Every send to a room queues on this lock, which is what makes `seq` gap-free: the
    counter moves only inside the transaction that inserts the message.
    """
    # FOR NO KEY UPDATE: it does not hold up inserts that reference the room (see
    # `batched._LOCK_ROOMS`).
    stmt = select(rooms.c.last_seq).where(rooms.c.id == room_id).with_for_update(key_share=True)
    return int((await session.execute(stmt)).scalar_one())


async def rename(session: AsyncSession, room_id: uuid.UUID, name: str) -> None:
    await session.execute(
        update(rooms).where(rooms.c.id == room_id).values(name=name, last_activity_at=func.now())
    )


async def touch(session: AsyncSession, room_id: uuid.UUID) -> None:
    await session.execute(
        update(rooms).where(rooms.c.id == room_id).values(last_activity_at=func.now())
    )


async def list_for_user(
    session: AsyncSession,
    user_id: str,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[RowMapping]:
    """The user's rooms, newest activity first, with their own watermarks and unread count.

    Unread counts only others' live messages above the member's read watermark, so the
    cost is the unread range, not the room's history.
    """
    unread = (
        select(func.count())
        .where(
            messages.c.room_id == rooms.c.id,
            messages.c.seq > members.c.read_seq,
            messages.c.sender_id != members.c.user_id,
            messages.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )
    stmt = (
        select(
            rooms,
            members.c.delivered_seq.label("own_delivered_seq"),
            members.c.read_seq.label("own_read_seq"),
            unread.label("unread"),
        )
        .join(members, members.c.room_id == rooms.c.id)
        .where(members.c.user_id == user_id)
        .order_by(rooms.c.last_activity_at.desc(), rooms.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(tuple_(rooms.c.last_activity_at, rooms.c.id) < tuple_(after[0], after[1]))
    return (await session.execute(stmt)).mappings().all()


async def last_messages(
    session: AsyncSession, room_seqs: list[tuple[uuid.UUID, int]]
) -> dict[uuid.UUID, RowMapping]:
    wanted = [(room, seq) for room, seq in room_seqs if seq > 0]
    if not wanted:
        return {}
    stmt = select(messages).where(and_(tuple_(messages.c.room_id, messages.c.seq).in_(wanted)))
    rows = (await session.execute(stmt)).mappings().all()
    return {row["room_id"]: row for row in rows}
