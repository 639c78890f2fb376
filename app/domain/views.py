"""Database rows turned into the contract's wire shapes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import RowMapping

from app import schemas


def message(row: Mapping[str, Any] | RowMapping) -> schemas.Message:
    attachment = row["attachment"]
    return schemas.Message(
        id=row["id"],
        room_id=row["room_id"],
        seq=row["seq"],
        sender_id=row["sender_id"],
        kind=row["kind"],
        body=row["body"],
        attachment=schemas.Attachment(**attachment) if attachment else None,
        client_msg_id=row["client_msg_id"],
        created_at=row["created_at"],
        edited_at=row["edited_at"],
        deleted=row["deleted_at"] is not None,
    )


def member(row: RowMapping) -> schemas.Member:
    return schemas.Member(
        user_id=row["user_id"],
        name=row["name"],
        role=row["role"],
        delivered_seq=row["delivered_seq"],
        read_seq=row["read_seq"],
    )


def room(row: RowMapping, members: list[RowMapping]) -> schemas.Room:
    return schemas.Room(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        created_at=row["created_at"],
        last_seq=row["last_seq"],
        members=[member(m) for m in members],
    )


def watermarks(row: RowMapping) -> schemas.Watermarks:
    # Built without validation: every field comes typed from its column, and this runs
    # once per `delivered` or `read`, the most frequent frames.
    return schemas.Watermarks.model_construct(
        room_id=row["room_id"], delivered_seq=row["delivered_seq"], read_seq=row["read_seq"]
    )
