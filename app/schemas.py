"""Wire shapes shared by REST and the WebSocket. Timestamps serialize as UTC with a `Z`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.domain.text import storable

Role = Literal["owner", "admin", "member"]
RoomKind = Literal["direct", "group"]
MessageKind = Literal["text", "image", "file"]
UserId = str
# Sequence numbers and cursors: JSON-safe integers, so no client or driver overflows.
MAX_SEQ = 2**53 - 1


def _storable(value: str) -> str:
    if not storable(value):
        raise ValueError("text must not contain NUL characters or unpaired surrogates")
    return value


# Every string a client sends: PostgreSQL refuses NUL and invalid UTF-8, so they are
# refused here, as a validation error, before anything reaches a store.
Text = Annotated[str, AfterValidator(_storable)]
Seq = Annotated[int, Field(ge=0, le=MAX_SEQ)]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- outputs ---------------------------------------------------------------------------


class Attachment(WireModel):
    """A file or image that lives at `url`; the service stores the reference, not the bytes."""

    url: Text = Field(min_length=1, max_length=2048, pattern=r"^https?://\S+$")
    name: Text = Field(min_length=1, max_length=255)
    mime: Text = Field(min_length=3, max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$")
    size: int = Field(ge=0, le=2**53)


class Message(WireModel):
    id: uuid.UUID
    room_id: uuid.UUID
    seq: int
    sender_id: UserId
    kind: MessageKind
    body: str | None
    attachment: Attachment | None
    client_msg_id: uuid.UUID
    created_at: datetime
    edited_at: datetime | None
    deleted: bool


class Member(WireModel):
    user_id: UserId
    name: str | None
    role: Role
    delivered_seq: int
    read_seq: int


class Room(WireModel):
    id: uuid.UUID
    kind: RoomKind
    name: str | None
    created_at: datetime
    last_seq: int
    members: list[Member]


class RoomSummary(Room):
    """A room as it appears in the caller's room list."""

    unread: int
    last_message: Message | None
    read_seq: int
    delivered_seq: int


class User(WireModel):
    id: UserId
    name: str | None
    online: bool
    last_seen: datetime | None


class Presence(WireModel):
    user_id: UserId
    online: bool
    last_seen: datetime | None


class Receipt(WireModel):
    """Where one recipient stands on one message; null until reached."""

    user_id: UserId
    delivered_at: datetime | None
    read_at: datetime | None


class Watermarks(WireModel):
    room_id: uuid.UUID
    delivered_seq: int
    read_seq: int


class RoomPage(WireModel):
    items: list[RoomSummary]
    next_cursor: str | None


class MessagePage(WireModel):
    items: list[Message]
    next_cursor: str | None


class ReceiptPage(WireModel):
    items: list[Receipt]
    next_cursor: str | None


class PresenceList(WireModel):
    items: list[Presence]


# ---- inputs ----------------------------------------------------------------------------


class DirectRoomCreate(WireModel):
    user_id: Text = Field(min_length=1, max_length=64)


class GroupCreate(WireModel):
    name: Text = Field(min_length=1)
    member_ids: list[Annotated[Text, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list
    )


class RoomUpdate(WireModel):
    name: Text = Field(min_length=1)


class MemberAdd(WireModel):
    user_id: Text = Field(min_length=1, max_length=64)
    role: Literal["admin", "member"] = "member"


class MessageSend(WireModel):
    client_msg_id: uuid.UUID
    kind: MessageKind = "text"
    body: Text | None = None
    attachment: Attachment | None = None


class MessageEdit(WireModel):
    body: Text


class ReadMark(WireModel):
    seq: Seq
