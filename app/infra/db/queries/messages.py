"""Messages: insert under the room lock, idempotency lookups, pages by seq, tombstones."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import RowMapping, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.infra.db.tables import Message, table

messages = table(Message)


async def get_message(
    session: AsyncSession, room_id: uuid.UUID, message_id: uuid.UUID, *, lock: bool = False
) -> RowMapping | None:
    stmt = select(messages).where(messages.c.room_id == room_id, messages.c.id == message_id)
    if lock:
        stmt = stmt.with_for_update()
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


async def find_by_client_ids(
    session: AsyncSession, keys: Iterable[tuple[str, uuid.UUID]]
) -> dict[tuple[str, uuid.UUID], RowMapping]:
    """Messages already stored under these (sender, client_msg_id) keys."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    stmt = select(messages).where(
        tuple_(messages.c.sender_id, messages.c.client_msg_id).in_(wanted)
    )
    rows = (await session.execute(stmt)).mappings().all()
    return {(row["sender_id"], row["client_msg_id"]): row for row in rows}


# One statement of one shape whatever the batch size: the arrays are parameters, so the
# statement compiles once (a multi-row VALUES compiled anew for every batch length).
_INSERT_MANY = text(
    """
    INSERT INTO messages (id, room_id, seq, sender_id, kind, body, attachment, client_msg_id)
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:rooms AS uuid[]), CAST(:seqs AS bigint[]),
        CAST(:senders AS varchar[]), CAST(:kinds AS varchar[]), CAST(:bodies AS text[]),
        CAST(:attachments AS jsonb[]), CAST(:client_msg_ids AS uuid[])
    )
    ON CONFLICT (sender_id, client_msg_id) DO NOTHING
    RETURNING *
    """
).columns(*messages.c)


async def insert_many(session: AsyncSession, rows: list[dict[str, Any]]) -> Sequence[RowMapping]:
    """Insert a batch in one statement; rows whose (sender, client_msg_id) exists are skipped
    (the caller compares counts and retries the batch)."""
    if not rows:
        return []
    params = {
        "ids": [uuid.uuid4() for _ in rows],
        "rooms": [row["room_id"] for row in rows],
        "seqs": [row["seq"] for row in rows],
        "senders": [row["sender_id"] for row in rows],
        "kinds": [str(row["kind"]) for row in rows],
        "bodies": [row["body"] for row in rows],
        "attachments": [
            orjson.dumps(row["attachment"]).decode() if row["attachment"] is not None else None
            for row in rows
        ],
        "client_msg_ids": [row["client_msg_id"] for row in rows],
    }
    return (await session.execute(_INSERT_MANY, params)).mappings().all()


_SENDERS_IN_RANGES = text(
    """
    SELECT DISTINCT r.idx, m.sender_id
    FROM unnest(CAST(:rooms AS uuid[]), CAST(:lows AS bigint[]), CAST(:highs AS bigint[]),
                CAST(:idx AS int[])) AS r(room_id, low, high, idx)
    JOIN messages AS m ON m.room_id = r.room_id AND m.seq > r.low AND m.seq <= r.high
    """
)


async def senders_in_ranges(
    session: AsyncSession, ranges: list[tuple[uuid.UUID, int, int]]
) -> list[set[str]]:
    """For each (room, low, high): who sent messages with low < seq <= high."""
    found: list[set[str]] = [set() for _ in ranges]
    if not ranges:
        return found
    params = {
        "rooms": [r[0] for r in ranges],
        "lows": [r[1] for r in ranges],
        "highs": [r[2] for r in ranges],
        "idx": list(range(len(ranges))),
    }
    for idx, sender in (await session.execute(_SENDERS_IN_RANGES, params)).all():
        found[idx].add(sender)
    return found
