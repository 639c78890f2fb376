"""What the client hands to the application: one small immutable record per server push.

Messages arrive as `MessageEvent`, per room in ascending `seq` with no gap and no
duplicate, whether they came live, from a `sync` replay after a reconnect, or (for this
client's own sends, `own=True`) from the ack of a `send`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypedDict


class Attachment(TypedDict):
    url: str
    name: str
    mime: str
    size: int


class Message(TypedDict):
    """A stored message, as the server serializes it (timestamps are UTC ISO 8601, `Z`)."""

    id: str
    room_id: str
    seq: int
    sender_id: str
    kind: Literal["text", "image", "file"]
    body: str | None
    attachment: Attachment | None
    client_msg_id: str
    created_at: str
    edited_at: str | None
    deleted: bool


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A new message: live, replayed by `sync`, or this client's own once acknowledged."""

    message: Message
    own: bool = False

    @property
    def room_id(self) -> str:
        return self.message["room_id"]

    @property
    def seq(self) -> int:
        return self.message["seq"]


@dataclass(frozen=True, slots=True)
class MessageUpdatedEvent:
    """A message was edited, or deleted (then `message.deleted` is true: a tombstone)."""

    message: Message


@dataclass(frozen=True, slots=True)
class ReceiptEvent:
    room_id: str
    user_id: str
    kind: Literal["delivered", "read"]
    seq: int
    at: str


@dataclass(frozen=True, slots=True)
class TypingEvent:
    room_id: str
    user_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    user_id: str
    online: bool
    last_seen: str | None


@dataclass(frozen=True, slots=True)
class RoomEvent:
    event: Literal["created", "updated", "member_added", "member_removed"]
    room_id: str
    user_id: str | None
    room: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """The client connected (after `hello`) or lost its connection (with the close code,
    when the server sent one)."""

    connected: bool
    connection_id: str | None
    close_code: int | None = None


Event = (
    MessageEvent
    | MessageUpdatedEvent
    | ReceiptEvent
    | TypingEvent
    | PresenceEvent
    | RoomEvent
    | ConnectionEvent
)


def from_push(frame: dict[str, Any]) -> Event | None:
    """The event for a push other than `message` (which goes through the sequencer);
    None for frames that are not events."""
    kind = frame.get("type")
    if kind == "message.updated":
        return MessageUpdatedEvent(message=frame["message"])
    if kind == "receipt":
        return ReceiptEvent(
            room_id=frame["room_id"],
            user_id=frame["user_id"],
            kind=frame["kind"],
            seq=int(frame["seq"]),
            at=frame["at"],
        )
    if kind == "typing":
        return TypingEvent(
            room_id=frame["room_id"], user_id=frame["user_id"], active=bool(frame["active"])
        )
    if kind == "presence":
        return PresenceEvent(
            user_id=frame["user_id"], online=bool(frame["online"]), last_seen=frame["last_seen"]
        )
    if kind == "room":
        return RoomEvent(
            event=frame["event"],
            room_id=frame["room_id"],
            user_id=frame.get("user_id"),
            room=frame.get("room"),
        )
    return None
