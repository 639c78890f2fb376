"""Rooms and their members."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app import schemas
from app.api.deps import CurrentActor, LimitsDep, ServicesDep, WorkDep
from app.api.problems import responses
from app.domain import membership, rooms, watermarks
from app.errors import ErrorCode
from app.schemas import DEFAULT_LIMITS

router = APIRouter(prefix="/v1/rooms", tags=["rooms"])

NOT_FOUND = ErrorCode.ROOM_NOT_FOUND
BAD = ErrorCode.VALIDATION_FAILED
TOO_LARGE = ErrorCode.PAYLOAD_TOO_LARGE  # a body over CHAT_MAX_FRAME_BYTES, on any route
PAGE_SIZE = {"maximum": DEFAULT_LIMITS.max_page_size}  # CHAT_MAX_PAGE_SIZE; the default shown

# OpenAPI links: where the ids a response carries lead, for clients and stateful testing.
ROOM_ID = "$response.body#/id"
ROOM_LINKS = {
    "GetRoom": {"operationId": "get_room", "parameters": {"room_id": ROOM_ID}},
    "RenameRoom": {"operationId": "update_room", "parameters": {"room_id": ROOM_ID}},
    "AddMember": {"operationId": "add_member", "parameters": {"room_id": ROOM_ID}},
    "ListMessages": {"operationId": "list_messages", "parameters": {"room_id": ROOM_ID}},
    "SendMessage": {"operationId": "send_message", "parameters": {"room_id": ROOM_ID}},
    "MarkRead": {"operationId": "mark_read", "parameters": {"room_id": ROOM_ID}},
}
ADDED_LINKS = {
    **ROOM_LINKS,
    "RemoveAddedMember": {
        "operationId": "remove_member",
        "parameters": {"room_id": ROOM_ID, "user_id": "$request.body#/user_id"},
    },
}


@router.post(
    "/direct",
    name="open_direct_room",
    response_model=schemas.Room,
    responses={**responses(BAD, TOO_LARGE), 200: {"links": ROOM_LINKS}},
)
async def open_direct_room(
    body: schemas.DirectRoomCreate, actor: CurrentActor, work: WorkDep
) -> schemas.Room:
    """Get or create the one private room of the caller and that user (idempotent)."""
    room, _ = await rooms.open_direct(work, actor, body.user_id)
    return room


@router.post(
    "",
    name="create_group",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Room,
    responses={**responses(BAD, TOO_LARGE), 201: {"links": ROOM_LINKS}},
)
async def create_group(
    body: schemas.GroupCreate, actor: CurrentActor, work: WorkDep, limits: LimitsDep
) -> schemas.Room:
    """Create a group; the caller is its owner."""
    return await rooms.create_group(work, actor, body.name, body.member_ids, limits)


@router.get("", name="list_rooms", response_model=schemas.RoomPage, responses=responses(BAD))
async def list_rooms(
    actor: CurrentActor,
    work: WorkDep,
    limits: LimitsDep,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, json_schema_extra=PAGE_SIZE)] = 50,
) -> schemas.RoomPage:
    """The caller's rooms, newest activity first, with unread counts and own watermarks."""
    return await rooms.list_rooms(work, actor, cursor, limit, limits)


@router.get(
    "/{room_id}", name="get_room", response_model=schemas.Room, responses=responses(NOT_FOUND, BAD)
)
async def get_room(room_id: uuid.UUID, actor: CurrentActor, work: WorkDep) -> schemas.Room:
    """One room with its members and their roles."""
    return await rooms.get_room(work, actor, room_id)


@router.patch(
    "/{room_id}",
    name="update_room",
    response_model=schemas.Room,
    responses=responses(NOT_FOUND, ErrorCode.FORBIDDEN, BAD, TOO_LARGE),
)
async def update_room(
    room_id: uuid.UUID,
    body: schemas.RoomUpdate,
    actor: CurrentActor,
    work: WorkDep,
    limits: LimitsDep,
) -> schemas.Room:
    """Rename a group (owner or admin)."""
    return await rooms.rename(work, actor, room_id, body.name, limits)


@router.post(
    "/{room_id}/members",
    name="add_member",
    tags=["members"],
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Room,
    responses={
        **responses(NOT_FOUND, ErrorCode.FORBIDDEN, ErrorCode.CONFLICT, BAD, TOO_LARGE),
        201: {"links": ADDED_LINKS},
    },
)
async def add_member(
    room_id: uuid.UUID,
    body: schemas.MemberAdd,
    actor: CurrentActor,
    work: WorkDep,
    limits: LimitsDep,
) -> schemas.Room:
    """Add a member (owner or admin; only the owner appoints admins)."""
    return await membership.add_member(work, actor, room_id, body.user_id, body.role, limits)


@router.delete(
    "/{room_id}/members/{user_id}",
    name="remove_member",
    tags=["members"],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(NOT_FOUND, ErrorCode.FORBIDDEN, ErrorCode.NOT_A_MEMBER, BAD),
)
async def remove_member(
    room_id: uuid.UUID, user_id: str, actor: CurrentActor, work: WorkDep
) -> Response:
    """Remove a member (owner or admin), or leave the room (your own user id)."""
    await membership.remove_member(work, actor, room_id, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{room_id}/read",
    name="mark_read",
    tags=["receipts"],
    response_model=schemas.Watermarks,
    responses=responses(NOT_FOUND, BAD, TOO_LARGE),
)
async def mark_read(
    room_id: uuid.UUID, body: schemas.ReadMark, actor: CurrentActor, services: ServicesDep
) -> schemas.Watermarks:
    """Move the caller's read watermark forward (clamped to the room's last seq)."""
    return await services.watermark_writer.mark(watermarks.Mark(actor, room_id, read=body.seq))
