"""Members: roles, joins and leaves, and the two watermarks per member and room."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import (
    RowMapping,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.db.tables import Member, Room, User, table

members = table(Member)
rooms = table(Room)
users = table(User)


async def get_member(
    session: AsyncSession, room_id: uuid.UUID, user_id: str, *, lock: bool = False
) -> RowMapping | None:
    stmt = select(members).where(members.c.room_id == room_id, members.c.user_id == user_id)
    if lock:
        stmt = stmt.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    return (await session.execute(stmt)).mappings().one_or_none()


async def list_members(
    session: AsyncSession, room_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[RowMapping]]:
    stmt = (
        select(members, users.c.name)
        .join(users, users.c.id == members.c.user_id)
        .where(members.c.room_id.in_(list(room_ids)))
        .order_by(members.c.room_id, members.c.joined_at, members.c.user_id)
    )
    grouped: dict[uuid.UUID, list[RowMapping]] = {}
    for row in (await session.execute(stmt)).mappings().all():
        grouped.setdefault(row["room_id"], []).append(row)
    return grouped


async def member_ids(session: AsyncSession, room_id: uuid.UUID) -> list[str]:
    stmt = select(members.c.user_id).where(members.c.room_id == room_id)
    return list((await session.execute(stmt)).scalars().all())


async def add_members(
    session: AsyncSession, room_id: uuid.UUID, roles: dict[str, str], joined_seq: int
) -> list[str]:
    """Insert members; returns the ids actually added (existing members are left alone).

    A newcomer's watermarks start at the room's last_seq: earlier history is readable but
    was never sent to them, so it is neither unread nor awaiting their receipt.
    """
    if not roles:
        return []
    stmt = (
        insert(members)
        .values(
            [
                {
                    "room_id": room_id,
                    "user_id": user_id,
                    "role": role,
                    "delivered_seq": joined_seq,
                    "read_seq": joined_seq,
                    "joined_seq": joined_seq,
                }
                for user_id, role in roles.items()
            ]
        )
        .on_conflict_do_nothing()
        .returning(members.c.user_id)
    )
    return list((await session.execute(stmt)).scalars().all())


async def remove_member(session: AsyncSession, room_id: uuid.UUID, user_id: str) -> bool:
    stmt = (
        delete(members)
        .where(members.c.room_id == room_id, members.c.user_id == user_id)
        .returning(members.c.user_id)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def set_role(session: AsyncSession, room_id: uuid.UUID, user_id: str, role: str) -> None:
    await session.execute(
        update(members)
        .where(members.c.room_id == room_id, members.c.user_id == user_id)
        .values(role=role)
    )


async def successor(session: AsyncSession, room_id: uuid.UUID) -> str | None:
    """Who inherits a group when its owner leaves: the longest-standing admin, else member."""
    stmt = (
        select(members.c.user_id)
        .where(members.c.room_id == room_id)
        .order_by((members.c.role == "admin").desc(), members.c.joined_at, members.c.user_id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def count_members(session: AsyncSession, room_id: uuid.UUID) -> int:
    stmt = select(func.count()).select_from(members).where(members.c.room_id == room_id)
    return int((await session.execute(stmt)).scalar_one())


async def memberships_of(session: AsyncSession, user_id: str) -> Sequence[RowMapping]:
    """Every room of a user with their delivered watermark and the room's last_seq."""
    stmt = (
        select(members.c.room_id, members.c.delivered_seq, rooms.c.last_seq)
        .join(rooms, rooms.c.id == members.c.room_id)
        .where(members.c.user_id == user_id)
    )
    return (await session.execute(stmt)).mappings().all()
