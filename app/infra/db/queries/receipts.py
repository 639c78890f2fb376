"""Receipt rows: when each watermark passed each seq, read back per recipient."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, case, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.db.tables import Member, Receipt, table

receipts = table(Receipt)
members = table(Member)


def _reached_at(kind: str, seq: int, watermark: ColumnElement[int]) -> ColumnElement[Any]:
    first_row = (
        select(receipts.c.at)
        .where(
            receipts.c.room_id == members.c.room_id,
            receipts.c.user_id == members.c.user_id,
            receipts.c.kind == kind,
            receipts.c.up_to_seq >= seq,
        )
        .order_by(receipts.c.up_to_seq)
        .limit(1)
        .scalar_subquery()
    )
    return case((watermark >= seq, first_row), else_=None)


async def recipients_status(
    session: AsyncSession,
    room_id: uuid.UUID,
    seq: int,
    sender_id: str,
    after_user: str | None,
    limit: int,
) -> Sequence[RowMapping]:
    """delivered_at / read_at of one message for each member it was sent to, by user id."""
    stmt = (
        select(
            members.c.user_id,
            _reached_at("delivered", seq, members.c.delivered_seq).label("delivered_at"),
            _reached_at("read", seq, members.c.read_seq).label("read_at"),
        )
        .where(
            members.c.room_id == room_id,
            members.c.user_id != sender_id,
            members.c.joined_seq < seq,
        )
        .order_by(members.c.user_id)
        .limit(limit)
    )
    if after_user is not None:
        stmt = stmt.where(members.c.user_id > after_user)
    return (await session.execute(stmt)).mappings().all()
