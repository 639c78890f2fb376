"""Every WebSocket frame of the contract as a typed model, and the one place frames are parsed.

Parsing is strict: the JSON parser refuses NaN and Infinity, a frame must be an object
with a known `type`, and every field is validated. A bad frame becomes a `FrameError`
carrying the contract code (and the frame's `id`, when it had a usable one).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from app import schemas
from app.errors import ErrorCode
from app.serialization import DuplicateKey, loads_strict

FrameId = Annotated[str, Field(max_length=64)]
MAX_SYNC_LIMIT = 500


class ClientFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: FrameId | None = None


class AuthFrame(ClientFrame):
    """Authenticate (as the first frame) or renew before `exp` (same `sub`)."""

    type: Literal["auth"]
    token: str = Field(max_length=16384)


class SendFrame(ClientFrame, schemas.MessageSend):
    """Store a message and fan it out (the REST send's body, plus the room); the ack
    carries the stored message."""

    type: Literal["send"]
    room_id: uuid.UUID


class SyncFrame(ClientFrame):
    """Replay every message after each cursor; rooms left out start at `delivered_seq`."""

    type: Literal["sync"]
    cursors: dict[uuid.UUID, schemas.Seq] = Field(default_factory=dict)
    limit: Annotated[int, schemas.JsonInteger(1, MAX_SYNC_LIMIT)] = 100


class DeliveredFrame(ClientFrame):
    type: Literal["delivered"]
    room_id: uuid.UUID
    seq: schemas.Seq


class ReadFrame(ClientFrame):
    type: Literal["read"]
    room_id: uuid.UUID
    seq: schemas.Seq


class TypingFrame(ClientFrame):
    type: Literal["typing"]
    room_id: uuid.UUID
    active: Annotated[bool, Strict()]


class PresenceWatchFrame(ClientFrame):
    """Replace the set of users whose presence this connection follows.

    The ack gives each one's state as of the ack; every later change comes after it, as a
    `presence` push."""

    type: Literal["presence.watch"]
    user_ids: list[Annotated[schemas.Text, Field(min_length=1, max_length=64)]] = Field(
        max_length=500
    )


class PingFrame(ClientFrame):
    type: Literal["ping"]


AnyClientFrame = Annotated[
    AuthFrame
    | SendFrame
    | SyncFrame
    | DeliveredFrame
    | ReadFrame
    | TypingFrame
    | PresenceWatchFrame
    | PingFrame,
    Field(discriminator="type"),
]
CLIENT_TYPES = frozenset(
    m.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for m in ClientFrame.__subclasses__()
)
_client_frame: TypeAdapter[AnyClientFrame] = TypeAdapter(AnyClientFrame)


class FrameError(Exception):
    def __init__(self, code: ErrorCode, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


def _id_of(data: dict[str, Any]) -> str | None:
    frame_id = data.get("id")
    return frame_id if isinstance(frame_id, str) and len(frame_id) <= 64 else None


def id_of(raw: str | bytes) -> str | None:
    """The `id` of a frame that is not otherwise read (refused before parsing), so its
    error still names it; None when there is none to be had."""
    try:
        data: Any = orjson.loads(raw)
    except (ValueError, RecursionError):
        return None
    return _id_of(data) if isinstance(data, dict) else None


def parse(raw: str | bytes) -> AnyClientFrame:
    try:
        data: Any = loads_strict(raw)
    except DuplicateKey as exc:
        raise FrameError(ErrorCode.INVALID_FRAME, "frame has a duplicate key") from exc
    except (ValueError, RecursionError) as exc:
        raise FrameError(ErrorCode.INVALID_FRAME, "frame is not valid JSON") from exc
    if not isinstance(data, dict):
        raise FrameError(ErrorCode.INVALID_FRAME, "a frame is a JSON object")
    frame_id = _id_of(data)
    frame_type = data.get("type")
    if not isinstance(frame_type, str):
        raise FrameError(ErrorCode.INVALID_FRAME, "a frame needs a string `type`", frame_id)
    if frame_type not in CLIENT_TYPES:
        raise FrameError(
            ErrorCode.UNKNOWN_TYPE, f"unknown frame type {frame_type[:64]!r}", frame_id
        )
    try:
        return _client_frame.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "frame"
        raise FrameError(ErrorCode.VALIDATION_FAILED, f"{where}: {first['msg']}", frame_id) from exc


# ---- server to client ----------------------------------------------------------------


class ServerFrame(BaseModel):
    pass


class HelloFrame(ServerFrame):
    """Sent once the connection is authenticated."""

    type: Literal["hello"]
    user_id: str
    connection_id: str
    heartbeat_s: float
    server_time: datetime


class AckFrame(ServerFrame):
    type: Literal["ack"]
    id: str | None
    data: dict[str, Any]


class ErrorFrame(ServerFrame):
    type: Literal["error"]
    id: str | None = None
    code: ErrorCode
    message: str
    retry_after_ms: int | None = None


class PongFrame(ServerFrame):
    type: Literal["pong"]
    id: str | None = None


class MessageFrame(ServerFrame):
    """A new message in a room the connection's user belongs to. A room's new messages
    arrive in `seq` order, whichever instance they were sent on; a client that sees a
    `seq` skipped gets the missing ones with `sync`."""

    type: Literal["message"]
    message: schemas.Message


class MessageUpdatedFrame(ServerFrame):
    """A message was edited or deleted (a tombstone)."""

    type: Literal["message.updated"]
    message: schemas.Message


class ReceiptFrame(ServerFrame):
    type: Literal["receipt"]
    room_id: uuid.UUID
    user_id: str
    kind: Literal["delivered", "read"]
    seq: int
    at: datetime


class TypingPushFrame(ServerFrame):
    type: Literal["typing"]
    room_id: uuid.UUID
    user_id: str
    active: bool


class PresenceFrame(ServerFrame):
    type: Literal["presence"]
    user_id: str
    online: bool
    last_seen: datetime | None


class RoomFrame(ServerFrame):
    type: Literal["room"]
    event: Literal["created", "updated", "member_added", "member_removed"]
    room_id: uuid.UUID
    user_id: str | None = None
    room: schemas.Room | None = None


class ResyncFrame(ServerFrame):
    """Live pushes may have been lost (the bus reconnected): `sync` from your cursors."""

    type: Literal["resync"]


def dumps_ack(frame_id: str | None, data: dict[str, Any]) -> str:
    """An `ack` (`AckFrame`): `data` is already JSON-ready, so it is written as it is
    rather than validated again, on the hot path."""
    return orjson.dumps({"type": "ack", "id": frame_id, "data": data}).decode()


def dumps_error(
    frame_id: str | None, code: ErrorCode, message: str, retry_after_ms: int | None = None
) -> str:
    error = ErrorFrame(
        type="error", id=frame_id, code=code, message=message, retry_after_ms=retry_after_ms
    )
    return error.model_dump_json(exclude_none=True)
