"""Messages of a room: history, send, edit, delete, and per-recipient receipts."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app import schemas
from app.api.deps import CurrentActor, LimitsDep, ServicesDep, WorkDep
from app.api.problems import responses
from app.domain import messages, watermarks
from app.errors import ErrorCode
from app.schemas import DEFAULT_LIMITS, MAX_SEQ

router = APIRouter(prefix="/v1/rooms/{room_id}/messages", tags=["messages"])

ROOM = ErrorCode.ROOM_NOT_FOUND
MESSAGE = ErrorCode.MESSAGE_NOT_FOUND
BAD = ErrorCode.VALIDATION_FAILED
PAGE_SIZE = {"maximum": DEFAULT_LIMITS.max_page_size}  # CHAT_MAX_PAGE_SIZE; the default shown

# OpenAPI links: a stored message leads to its edit, delete and receipts.
_MESSAGE = {"room_id": "$response.body#/room_id", "message_id": "$response.body#/id"}
MESSAGE_LINKS = {
    "EditMessage": {"operationId": "edit_message", "parameters": _MESSAGE},
    "DeleteMessage": {"operationId": "delete_message", "parameters": _MESSAGE},
    "ListReceipts": {"operationId": "list_receipts", "parameters": _MESSAGE},
    "ListMessages": {
        "operationId": "list_messages",
        "parameters": {"room_id": "$response.body#/room_id"},
    },
}


@router.get(
    "", name="list_messages", response_model=schemas.MessagePage, responses=responses(ROOM, BAD)
)
async def list_messages(
    room_id: uuid.UUID,
    actor: CurrentActor,
    work: WorkDep,
    limits: LimitsDep,
    before: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="Newest messages below this seq.")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SEQ, description="Oldest messages above this seq.")
    ] = None,
    limit: Annotated[int, Query(ge=1, json_schema_extra=PAGE_SIZE)] = 50,
) -> schemas.MessagePage:
    """History by seq, always ascending. Neither cursor: the newest page."""
    return await messages.history(
        work, actor, room_id, before=before, after=after, limit=limit, limits=limits
    )


@router.post(
    "",
    name="send_message",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Message,
    responses={
        **responses(ROOM, BAD, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.CONFLICT),
        201: {"links": MESSAGE_LINKS},
    },
)
async def send_message(
    room_id: uuid.UUID, body: schemas.MessageSend, actor: CurrentActor, services: ServicesDep
) -> schemas.Message:
    """Send a message. Repeating a `client_msg_id` returns the first message, creating nothing."""
    return await services.writer.send(actor, room_id, body)


@router.patch(
    "/{message_id}",
    name="edit_message",
    response_model=schemas.Message,
    responses={
        **responses(
            ROOM, MESSAGE, ErrorCode.FORBIDDEN, ErrorCode.CONFLICT, BAD, ErrorCode.PAYLOAD_TOO_LARGE
        ),
        200: {"links": MESSAGE_LINKS},
    },
)
async def edit_message(
    room_id: uuid.UUID,
    message_id: uuid.UUID,
    body: schemas.MessageEdit,
    actor: CurrentActor,
    work: WorkDep,
    limits: LimitsDep,
) -> schemas.Message:
    """Edit your own message's body."""
    return await messages.edit(work, actor, room_id, message_id, body.body, limits)


@router.delete(
    "/{message_id}",
    name="delete_message",
    response_model=schemas.Message,
    # A tombstone keeps its receipts.
    responses={
        **responses(ROOM, MESSAGE, ErrorCode.FORBIDDEN, BAD),
        200: {"links": {"ListReceipts": MESSAGE_LINKS["ListReceipts"]}},
    },
)
async def delete_message(
    room_id: uuid.UUID, message_id: uuid.UUID, actor: CurrentActor, work: WorkDep
) -> schemas.Message:
    """Delete your own message for good; a tombstone stays in history."""
    return await messages.delete(work, actor, room_id, message_id)


@router.get(
    "/{message_id}/receipts",
    name="list_receipts",
    tags=["receipts"],
    response_model=schemas.ReceiptPage,
    responses=responses(ROOM, MESSAGE, BAD),
)
async def list_receipts(
    room_id: uuid.UUID,
    message_id: uuid.UUID,
    actor: CurrentActor,
    work: WorkDep,
    limits: LimitsDep,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, json_schema_extra=PAGE_SIZE)] = 100,
) -> schemas.ReceiptPage:
    """When the message was delivered to and read by each recipient (null until then)."""
    return await watermarks.message_receipts(
        work, actor, room_id, message_id, cursor, limit, limits
    )
