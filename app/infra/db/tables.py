"""The PostgreSQL schema as SQLModel tables; Alembic migrations are checked against it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

# Stable constraint names, so migrations stay reviewable and `alembic check` stays quiet.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata

NOW = text("now()")


def _ts(*, nullable: bool = False, default: bool = False) -> Any:
    return Field(
        sa_column=Column(
            DateTime(timezone=True), nullable=nullable, server_default=NOW if default else None
        )
    )


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    created_at: datetime = _ts(default=True)
    last_seen_at: datetime | None = _ts(nullable=True)


class Room(SQLModel, table=True):
    __tablename__ = "rooms"
    __table_args__ = (
        CheckConstraint("kind IN ('direct', 'group')", name="kind"),
        # One private room per pair: the two ids are stored sorted, so (a, b) and (b, a) collide.
        UniqueConstraint("direct_low", "direct_high"),
        CheckConstraint(
            "(kind = 'direct') = (direct_low IS NOT NULL AND direct_high IS NOT NULL)",
            name="direct_pair",
        ),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    kind: str = Field(sa_column=Column(String(10), nullable=False))
    name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    last_seq: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    created_at: datetime = _ts(default=True)
    last_activity_at: datetime = _ts(default=True)
    direct_low: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    direct_high: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))


class Member(SQLModel, table=True):
    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="role"),
        CheckConstraint("read_seq <= delivered_seq", name="read_implies_delivered"),
        # "My rooms" is the hottest listing; it starts from the user.
        Index(None, "user_id", "room_id"),
    )

    room_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True), ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
        )
    )
    user_id: str = Field(sa_column=Column(String(64), ForeignKey("users.id"), primary_key=True))
    role: str = Field(sa_column=Column(String(10), nullable=False))
    delivered_seq: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    read_seq: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    # The room's last_seq when the member joined: earlier messages were not sent to them,
    # so they are not among those messages' recipients.
    joined_seq: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    joined_at: datetime = _ts(default=True)


# Messages and receipts are the two tables written per message, thousands of rows a
# second, and carry no foreign keys. Each key is checked per row by a trigger that
# looks up and share-locks the room or user row: measured on the batch statements, the
# four keys were a quarter of PostgreSQL's CPU per message (about 8 of 34 µs per message
# stored, 10 of 38 per receipt row). What they guarded holds without them: both tables
# are written only by statements that join the writer's membership row in the same
# statement (`batched.send_all`, `raise_watermarks`, the transactional send), members
# keep their own keys to rooms and users, and no room or user is ever deleted.
# `tests/infra/test_integrity.py` holds that to account.
class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint("kind IN ('text', 'image', 'file')", name="kind"),
        # The sender rides along in the index, so unread counts and the senders a receipt
        # goes to (a member's range scanned for messages by others) read the index alone.
        UniqueConstraint("room_id", "seq", postgresql_include=["sender_id"]),
        UniqueConstraint("sender_id", "client_msg_id"),
    )

    id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    # No foreign keys here or on receipts: see the note above this class.
    room_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    sender_id: str = Field(sa_column=Column(String(64), nullable=False))
    kind: str = Field(sa_column=Column(String(10), nullable=False))
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attachment: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    client_msg_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    created_at: datetime = _ts(default=True)
    edited_at: datetime | None = _ts(nullable=True)
    deleted_at: datetime | None = _ts(nullable=True)


class Receipt(SQLModel, table=True):
    """One row each time a member's watermark moves: "kind reached up_to_seq at `at`".

    The time a given message was delivered to / read by a member is the `at` of the first
    row whose up_to_seq reaches it, so status stays exact without a row per message.
    """

    __tablename__ = "receipts"
    # Keyed by the move itself (no surrogate id): a watermark of one kind only moves up,
    # so it reaches a seq at most once, and every read goes by this key (migration 0003).
    __table_args__ = (CheckConstraint("kind IN ('delivered', 'read')", name="kind"),)

    room_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    user_id: str = Field(sa_column=Column(String(64), primary_key=True))
    kind: str = Field(sa_column=Column(String(10), primary_key=True))
    up_to_seq: int = Field(sa_column=Column(BigInteger, primary_key=True))
    at: datetime = _ts(default=True)


def table(model: type[SQLModel]) -> Table:
    """The Core table of a model, for the query modules' SQL expressions."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]
