"""Users: created on first sight of a token `sub`, or when first named as a member."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import RowMapping, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.db.tables import Member, User, table

users = table(User)
members = table(Member)


async def upsert_user(session: AsyncSession, user_id: str, name: str | None) -> None:
    stmt = insert(users).values(id=user_id, name=name)
    if name is None:
        stmt = stmt.on_conflict_do_nothing(index_elements=[users.c.id])
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=[users.c.id],
            set_={"name": stmt.excluded.name},
            where=users.c.name.is_distinct_from(stmt.excluded.name),
        )
    await session.execute(stmt)


async def ensure_users(session: AsyncSession, user_ids: Iterable[str]) -> None:
    ids = sorted(set(user_ids))
    if ids:
        stmt = insert(users).values([{"id": i} for i in ids]).on_conflict_do_nothing()
        await session.execute(stmt)


async def get_users(session: AsyncSession, user_ids: Iterable[str]) -> Sequence[RowMapping]:
    result = await session.execute(
        select(users.c.id, users.c.name, users.c.last_seen_at).where(users.c.id.in_(list(user_ids)))
    )
    return result.mappings().all()


async def sharing_a_room(session: AsyncSession, user_id: str, others: Iterable[str]) -> set[str]:
    """Which of `others` share at least one room with `user_id`."""
    mine = members.alias("mine")
    theirs = members.alias("theirs")
    result = await session.execute(
        select(theirs.c.user_id)
        .distinct()
        .join(mine, mine.c.room_id == theirs.c.room_id)
        .where(mine.c.user_id == user_id, theirs.c.user_id.in_(list(others)))
    )
    return set(result.scalars().all())


async def set_last_seen(session: AsyncSession, user_id: str, at: datetime) -> None:
    await session.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(last_seen_at=func.greatest(func.coalesce(users.c.last_seen_at, at), at))
    )
