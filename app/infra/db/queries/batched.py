"""The write lanes' statements: fixed SQL run prepared on the driver connection
(`app/infra/db/direct.py`), a handful per batch whatever its size.

Each takes its batch whole, so one statement of one shape serves a batch of any length
and asyncpg prepares it once per connection. The hot ones (a batch of sends, of
watermark moves) take it as one JSON document of rows (`json_to_recordset`), the others
as a column per array parameter (`unnest`): asyncpg checks each element of an array
parameter through Python's abstract base classes, which for a batch of 30 messages was
about a third of the statement's cost on the event loop; orjson writes the same rows
in a fraction of that, and PostgreSQL reads them back as fast as arrays.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg
import orjson

_MEMBERS_AMONG = """
SELECT w.room_id, w.user_id
FROM unnest($1::uuid[], $2::varchar[]) AS w(room_id, user_id)
JOIN members AS m ON m.room_id = w.room_id AND m.user_id = w.user_id
"""


async def members_among(db: Any, pairs: Iterable[tuple[uuid.UUID, str]]) -> set[tuple[Any, str]]:
    """Which (room, user) pairs are memberships."""
    wanted = list(set(pairs))
    if not wanted:
        return set()
    rows = await db.fetch(_MEMBERS_AMONG, [p[0] for p in wanted], [p[1] for p in wanted])
    return {(row[0], row[1]) for row in rows}


# In id order, so writers locking overlapping sets of rooms can never deadlock. NO KEY
# UPDATE (the key is not changed), not UPDATE: a plain FOR UPDATE also blocks the KEY
# SHARE lock that every insert referencing a room (a message, a receipt) takes on it. A
# watermark batch holding member rows while its receipts waited for a room, and a writer
# holding that room while waiting for one the receipts had already referenced, made a
# cycle: PostgreSQL broke it by failing one batch (seen in `bench.run dm` at 3,000/s).
_LOCK_ROOMS = """
SELECT id, last_seq FROM rooms WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
"""


async def lock_rooms(db: Any, room_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Row-lock rooms and return their last_seq: a room's seq moves only under its lock,
    which is what keeps it gap-free."""
    ids = list(set(room_ids))
    if not ids:
        return {}
    return {row[0]: int(row[1]) for row in await db.fetch(_LOCK_ROOMS, ids)}


_FIND_BY_CLIENT_IDS = """
SELECT m.* FROM unnest($1::varchar[], $2::uuid[]) AS k(sender_id, client_msg_id)
JOIN messages AS m ON m.sender_id = k.sender_id AND m.client_msg_id = k.client_msg_id
"""


async def find_by_client_ids(
    db: Any, keys: Iterable[tuple[str, uuid.UUID]]
) -> dict[tuple[str, uuid.UUID], dict[str, Any]]:
    """Messages already stored under these (sender, client_msg_id) keys, as column maps."""
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = await db.fetch(_FIND_BY_CLIENT_IDS, [k[0] for k in wanted], [k[1] for k in wanted])
    found = {}
    for row in rows:
        columns = dict(row)
        if columns["attachment"] is not None:  # jsonb arrives as text on this connection
            columns["attachment"] = orjson.loads(columns["attachment"])
        found[(row["sender_id"], row["client_msg_id"])] = columns
    return found


# The insert and the rooms' new last_seq in one statement. A key that already exists is
# skipped: the caller compares counts and rolls the whole batch back (no seq is lost).
_INSERT_MESSAGES = """
WITH inserted AS (
    INSERT INTO messages (id, room_id, seq, sender_id, kind, body, attachment, client_msg_id)
    SELECT id, room_id, seq, sender_id, kind, body, attachment, client_msg_id
    FROM json_to_recordset($1::text::json) AS b(
        id uuid, room_id uuid, seq bigint, sender_id varchar, kind varchar, body text,
        attachment jsonb, client_msg_id uuid
    )
    ON CONFLICT (sender_id, client_msg_id) DO NOTHING
    RETURNING id, sender_id, client_msg_id, created_at
), advanced AS (
    UPDATE rooms SET last_seq = moved.seq, last_activity_at = now()
    FROM unnest($2::uuid[], $3::bigint[]) AS moved(id, seq)
    WHERE rooms.id = moved.id
)
SELECT * FROM inserted
"""


async def insert_messages(
    db: Any, rows: list[dict[str, Any]], last_seqs: dict[uuid.UUID, int]
) -> list[Any]:
    """Insert messages and move their rooms' last_seq; returns (id, sender_id,
    client_msg_id, created_at) of each row inserted."""
    if not rows:
        return []
    rooms = list(last_seqs)
    result: list[Any] = await db.fetch(
        _INSERT_MESSAGES, _rows_json(rows), rooms, [last_seqs[room] for room in rooms]
    )
    return result


# A whole batch of sends as one statement, atomic without a transaction around it:
# membership, the rooms locked in id order, each message numbered after its room's
# last_seq in the order of the batch, inserted, and the rooms' last_seq moved. A sender
# who is not a member gets no row back. A key already stored fails the statement (so
# nothing of the batch is kept and no seq is skipped): the caller runs the batch again
# in a transaction that looks its keys up first.
_SEND_ALL = """
WITH batch AS (
    SELECT * FROM ROWS FROM (json_to_recordset($1::text::json) AS (
        id uuid, room_id uuid, sender_id varchar, kind varchar, body text,
        attachment jsonb, client_msg_id uuid
    )) WITH ORDINALITY AS b(id, room_id, sender_id, kind, body, attachment, client_msg_id, idx)
), allowed AS (
    SELECT b.* FROM batch AS b
    JOIN members AS m ON m.room_id = b.room_id AND m.user_id = b.sender_id
), locked AS MATERIALIZED (
    SELECT id, last_seq FROM rooms WHERE id IN (SELECT room_id FROM allowed)
    ORDER BY id FOR NO KEY UPDATE
), numbered AS MATERIALIZED (
    SELECT a.*, l.last_seq + row_number() OVER (PARTITION BY a.room_id ORDER BY a.idx) AS seq
    FROM allowed AS a JOIN locked AS l ON l.id = a.room_id
), inserted AS (
    INSERT INTO messages (id, room_id, seq, sender_id, kind, body, attachment, client_msg_id)
    SELECT id, room_id, seq, sender_id, kind, body, attachment, client_msg_id FROM numbered
    RETURNING id, seq, created_at
), advanced AS (
    UPDATE rooms SET last_seq = n.seq, last_activity_at = now()
    FROM (SELECT room_id, max(seq) AS seq FROM numbered GROUP BY room_id) AS n
    WHERE rooms.id = n.room_id
)
SELECT id, seq, created_at FROM inserted
"""


class KeyTaken(Exception):
    """A (sender, client_msg_id) of the batch is already stored: nothing was kept."""


async def send_all(db: Any, rows: list[dict[str, Any]]) -> dict[uuid.UUID, Any]:
    """Store a batch of messages (rows without seq; `id` chosen by the caller) by
    `_SEND_ALL`; returns (seq, created_at) by id of each stored, KeyTaken if a key was."""
    try:
        result = await db.fetch(_SEND_ALL, _rows_json(rows))
    except asyncpg.UniqueViolationError as exc:
        raise KeyTaken from exc
    return {row["id"]: row for row in result}


def _rows_json(rows: list[dict[str, Any]]) -> str:
    """Rows as the JSON array `json_to_recordset` reads (uuids and times as text)."""
    return orjson.dumps(rows).decode()


# Forward only, clamped to the room's last_seq, read implying delivered. The rows are
# locked in key order first (no deadlock between batches; NO KEY UPDATE, see above),
# which also yields the values before the move; every watermark that moved writes its
# receipt row, and comes back with the senders of the messages it passed who are still
# members (a sender who left no longer hears of the room): one statement, atomic by
# itself, so the lane runs it without a transaction around it.
#
# The receipts' time is PostgreSQL's, read once per batch after every row is locked
# (`stamp` counts `before` to the end first). Any earlier move of those rows committed
# before the locks were granted, so a member's receipt times follow the order their
# watermarks moved, across instances whatever their clocks. Neither an instance's clock
# nor `statement_timestamp()` would: both are read before a wait for the locks, so a
# read that waited behind another batch's delivery could be stamped before it. Once per
# batch, not `clock_timestamp()` per row: the delivered and read receipts of one move
# share a time and cannot come out in the wrong order.
_RAISE_WATERMARKS = """
WITH wanted AS (
    SELECT * FROM json_to_recordset($1::text::json)
        AS w(room_id uuid, user_id varchar, dl bigint, rd bigint)
), before AS MATERIALIZED (
    SELECT m.room_id, m.user_id, m.delivered_seq, m.read_seq
    FROM members AS m JOIN wanted AS w ON m.room_id = w.room_id AND m.user_id = w.user_id
    ORDER BY m.room_id, m.user_id
    FOR NO KEY UPDATE OF m
), stamp AS MATERIALIZED (
    SELECT clock_timestamp() AS at FROM (SELECT count(*) FROM before) AS locked
), moved AS (
    UPDATE members AS m SET
        read_seq = GREATEST(m.read_seq, LEAST(w.rd, r.last_seq)),
        delivered_seq = GREATEST(
            m.delivered_seq, m.read_seq, LEAST(w.rd, r.last_seq), LEAST(w.dl, r.last_seq)
        )
    FROM wanted AS w
    JOIN rooms AS r ON r.id = w.room_id
    JOIN before AS b ON b.room_id = w.room_id AND b.user_id = w.user_id
    WHERE m.room_id = w.room_id AND m.user_id = w.user_id
    RETURNING m.room_id, m.user_id, m.delivered_seq, m.read_seq,
        b.delivered_seq AS delivered_before, b.read_seq AS read_before
), recorded AS (
    INSERT INTO receipts (room_id, user_id, kind, up_to_seq, at)
    SELECT room_id, user_id, 'delivered', delivered_seq, stamp.at FROM moved, stamp
    WHERE delivered_seq > delivered_before
    UNION ALL
    SELECT room_id, user_id, 'read', read_seq, stamp.at FROM moved, stamp
    WHERE read_seq > read_before
)
SELECT mv.*, stamp.at,
    ARRAY(
        SELECT DISTINCT msg.sender_id FROM messages AS msg
        JOIN members AS still ON still.room_id = msg.room_id AND still.user_id = msg.sender_id
        WHERE msg.room_id = mv.room_id
            AND msg.seq > mv.delivered_before AND msg.seq <= mv.delivered_seq
    ) AS delivered_senders,
    ARRAY(
        SELECT DISTINCT msg.sender_id FROM messages AS msg
        JOIN members AS still ON still.room_id = msg.room_id AND still.user_id = msg.sender_id
        WHERE msg.room_id = mv.room_id AND msg.seq > mv.read_before AND msg.seq <= mv.read_seq
    ) AS read_senders
FROM moved AS mv, stamp
"""


async def raise_watermarks(
    db: Any, targets: dict[tuple[uuid.UUID, str], tuple[int, int]]
) -> dict[tuple[uuid.UUID, str], Any]:
    """Move (delivered, read) watermarks of many members at once and record a receipt row
    for each one that moved. Returns each membership's row: the watermarks now and
    before (`delivered_before`, `read_before`), who sent what each passed
    (`delivered_senders`, `read_senders`), and `at`, the database's time of the move
    that its receipt rows hold; members that do not exist are absent."""
    if not targets:
        return {}
    wanted = [
        {"room_id": room, "user_id": user, "dl": delivered, "rd": read}
        for (room, user), (delivered, read) in targets.items()
    ]
    rows = await db.fetch(_RAISE_WATERMARKS, _rows_json(wanted))
    return {(row["room_id"], row["user_id"]): row for row in rows}


# For each (viewer, user) pair of many presence requests: may the viewer see the user
# (themselves, or sharing a room with them), and when was the user last seen.
_PRESENCE_ROWS = """
SELECT w.ord, u.last_seen_at, w.target = w.viewer OR EXISTS (
    SELECT 1 FROM members AS mine
    JOIN members AS theirs ON theirs.room_id = mine.room_id AND theirs.user_id = w.target
    WHERE mine.user_id = w.viewer
) AS visible
FROM unnest($1::int[], $2::varchar[], $3::varchar[]) AS w(ord, viewer, target)
LEFT JOIN users AS u ON u.id = w.target
"""


async def presence_rows(
    db: Any, pairs: list[tuple[str, str]]
) -> list[tuple[bool, datetime | None]]:
    """(visible, last seen) for each (viewer, user) pair, in order."""
    if not pairs:
        return []
    rows = await db.fetch(
        _PRESENCE_ROWS,
        list(range(len(pairs))),
        [viewer for viewer, _ in pairs],
        [user for _, user in pairs],
    )
    found = {row[0]: (bool(row[2]), row[1]) for row in rows}
    return [found[i] for i in range(len(pairs))]
