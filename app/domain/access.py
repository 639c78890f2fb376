"""Who may see and change a room. A non-member learns nothing: the room does not exist."""

from __future__ import annotations

import uuid

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Forbidden, RoomNotFound
from app.infra.db.queries import members

MANAGERS = frozenset({"owner", "admin"})


async def require_member(
    session: AsyncSession, room_id: uuid.UUID, user_id: str, *, lock: bool = False
) -> RowMapping:
    member = await members.get_member(session, room_id, user_id, lock=lock)
    if member is None:
        raise RoomNotFound("no such room")
    return member


async def require_manager(session: AsyncSession, room_id: uuid.UUID, user_id: str) -> RowMapping:
    member = await require_member(session, room_id, user_id)
    if member["role"] not in MANAGERS:
        raise Forbidden("only the room's owner or an admin may do this")
    return member
