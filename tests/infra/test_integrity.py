"""Messages and receipts carry no foreign keys (see the note above `Message` in
`app/infra/db/tables.py`): the statements that write them must never write a row whose
room or person is not a member's, which is what the keys used to refuse."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from alembic import command

from app.infra.db.queries import batched
from app.infra.migrate import alembic_config


@pytest.fixture
def schema(scratch_database: str) -> str:
    command.upgrade(alembic_config(), "head")
    return scratch_database.replace("postgresql+asyncpg://", "postgresql://")


def _on(schema: str, body: Callable[[asyncpg.Connection, uuid.UUID], Awaitable[None]]) -> None:
    """Run `body` with a connection and a room whose only member is 'member'."""

    async def run() -> None:
        conn = await asyncpg.connect(schema)
        try:
            room = uuid.uuid4()
            await conn.execute("INSERT INTO users (id) VALUES ('member'), ('outsider')")
            await conn.execute("INSERT INTO rooms (id, kind, name) VALUES ($1, 'group', 'r')", room)
            await conn.execute(
                "INSERT INTO members (room_id, user_id, role) VALUES ($1, 'member', 'owner')",
                room,
            )
            await body(conn, room)
        finally:
            await conn.close()

    asyncio.run(run())


def _send_row(room: uuid.UUID, sender: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "room_id": room,
        "sender_id": sender,
        "kind": "text",
        "body": "hi",
        "attachment": None,
        "client_msg_id": uuid.uuid4(),
    }


def test_a_send_to_a_room_that_does_not_exist_stores_nothing(schema: str) -> None:
    async def body(conn: asyncpg.Connection, room: uuid.UUID) -> None:
        stored = await batched.send_all(conn, [_send_row(uuid.uuid4(), "member")])
        assert stored == {}
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0

    _on(schema, body)


def test_a_send_by_a_user_who_is_not_a_member_stores_nothing(schema: str) -> None:
    async def body(conn: asyncpg.Connection, room: uuid.UUID) -> None:
        ghost, outsider = _send_row(room, "nobody"), _send_row(room, "outsider")
        kept = _send_row(room, "member")
        stored = await batched.send_all(conn, [ghost, outsider, kept])
        assert list(stored) == [kept["id"]]
        assert await conn.fetchval("SELECT array_agg(sender_id) FROM messages") == ["member"]

    _on(schema, body)


def test_the_transactional_send_takes_only_members(schema: str) -> None:
    # The path a batch takes when a key repeats: membership is looked up first.
    async def body(conn: asyncpg.Connection, room: uuid.UUID) -> None:
        found = await batched.members_among(
            conn, [(room, "member"), (room, "outsider"), (uuid.uuid4(), "member")]
        )
        assert found == {(room, "member")}

    _on(schema, body)


def test_a_watermark_of_someone_not_a_member_writes_no_receipt(schema: str) -> None:
    async def body(conn: asyncpg.Connection, room: uuid.UUID) -> None:
        await conn.execute("UPDATE rooms SET last_seq = 5 WHERE id = $1", room)
        targets = {(room, "outsider"): (5, 5), (uuid.uuid4(), "member"): (5, 5)}
        moved = await batched.raise_watermarks(conn, targets)
        assert moved == {}
        assert await conn.fetchval("SELECT count(*) FROM receipts") == 0

    _on(schema, body)


def test_a_members_watermark_writes_its_receipts(schema: str) -> None:
    # The counterpart: the statements above refuse outsiders, not everyone.
    async def body(conn: asyncpg.Connection, room: uuid.UUID) -> None:
        await conn.execute("UPDATE rooms SET last_seq = 5 WHERE id = $1", room)
        await batched.raise_watermarks(conn, {(room, "member"): (5, 3)})
        rows = await conn.fetch("SELECT user_id, kind, up_to_seq FROM receipts ORDER BY kind")
        assert [tuple(r) for r in rows] == [("member", "delivered", 5), ("member", "read", 3)]

    _on(schema, body)
