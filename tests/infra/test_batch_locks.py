"""The lanes' row locks never wait for a reference to the row (a foreign-key check),
and a watermark batch never waits for a send batch's room.

An insert that references a room (a membership) takes a KEY SHARE lock on the room's row
until its transaction ends. A send that locked its rooms FOR UPDATE waited for those,
and when receipts still referenced rooms, a receipt waiting for a room the send held
closed a cycle that PostgreSQL broke by failing a whole batch. The lanes lock FOR NO KEY
UPDATE, which such references do not block.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from alembic import command

from app.infra.db.queries import batched
from app.infra.migrate import alembic_config

# Far longer than taking a free lock; far shorter than a lock wait that never ends.
LOCK_WAIT_S = 3.0


@pytest.fixture
def schema(scratch_database: str) -> str:
    """Migrated, and of its own: the tests hold locks other tests must not meet."""
    command.upgrade(alembic_config(), "head")
    return scratch_database.replace("postgresql+asyncpg://", "postgresql://")


async def _room_with_member(conn: asyncpg.Connection) -> uuid.UUID:
    room = uuid.uuid4()
    await conn.execute("INSERT INTO users (id) VALUES ('u') ON CONFLICT DO NOTHING")
    await conn.execute("INSERT INTO rooms (id, kind, name) VALUES ($1, 'group', 'r')", room)
    await conn.execute(
        "INSERT INTO members (room_id, user_id, role) VALUES ($1, 'u', 'owner')", room
    )
    return room


def test_a_send_locks_rooms_a_pending_membership_references(schema: str) -> None:
    async def run() -> None:
        holder, sender = await asyncpg.connect(schema), await asyncpg.connect(schema)
        try:
            room = await _room_with_member(holder)
            async with holder.transaction():
                # Uncommitted: its foreign-key check holds KEY SHARE on the room's row.
                await holder.execute("INSERT INTO users (id) VALUES ('joining')")
                await holder.execute(
                    "INSERT INTO members (room_id, user_id, role) VALUES ($1, 'joining', 'member')",
                    room,
                )
                async with sender.transaction():
                    locked = await asyncio.wait_for(batched.lock_rooms(sender, [room]), LOCK_WAIT_S)
            assert locked == {room: 0}
        finally:
            await holder.close()
            await sender.close()

    asyncio.run(run())


def test_a_receipt_is_written_while_a_send_holds_its_room(schema: str) -> None:
    async def run() -> None:
        sender, marker = await asyncpg.connect(schema), await asyncpg.connect(schema)
        try:
            room = await _room_with_member(sender)
            await sender.execute(
                "INSERT INTO messages (id, room_id, seq, sender_id, kind, body, client_msg_id)"
                " VALUES ($1, $2, 1, 'u', 'text', 'hi', $3)",
                uuid.uuid4(),
                room,
                uuid.uuid4(),
            )
            await sender.execute("UPDATE rooms SET last_seq = 1 WHERE id = $1", room)
            async with sender.transaction():
                await batched.lock_rooms(sender, [room])
                # Moves delivered 0 -> 1: reads the locked room's last_seq, writes a receipt.
                moved = await asyncio.wait_for(
                    batched.raise_watermarks(marker, {(room, "u"): (1, 0)}),
                    LOCK_WAIT_S,
                )
            assert moved[(room, "u")]["delivered_seq"] == 1
        finally:
            await sender.close()
            await marker.close()

    asyncio.run(run())
