"""The server-to-client frames the domain emits, built in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from app import schemas

RoomEventKind = Literal["created", "updated", "member_added", "member_removed"]


def message(msg: schemas.Message) -> dict[str, Any]:
    return {"type": "message", "message": msg.as_json()}


def message_updated(msg: schemas.Message) -> dict[str, Any]:
    return {"type": "message.updated", "message": msg.as_json()}


def receipt(
    room_id: str, user_id: str, kind: Literal["delivered", "read"], seq: int, at: datetime
) -> dict[str, Any]:
    return {
        "type": "receipt",
        "room_id": room_id,
        "user_id": user_id,
        "kind": kind,
        "seq": seq,
        "at": iso_utc(at),
    }


def room(
    event: RoomEventKind,
    room_id: str,
    *,
    user_id: str | None = None,
    snapshot: schemas.Room | None = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "room", "event": event, "room_id": room_id}
    if user_id is not None:
        frame["user_id"] = user_id
    if snapshot is not None:
        frame["room"] = snapshot.model_dump(mode="json")
    return frame


def iso_utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
