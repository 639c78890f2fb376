"""The caller, other users, and their presence."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app import schemas
from app.api.deps import CurrentActor, ServicesDep, WorkDep
from app.api.problems import responses
from app.domain import users
from app.domain.text import valid_user_id
from app.errors import ErrorCode, ValidationFailed
from app.schemas import WHITESPACE

router = APIRouter(prefix="/v1", tags=["users"])


ME_LINKS = {
    "GetUser": {"operationId": "get_user", "parameters": {"user_id": "$response.body#/id"}},
    "GetPresence": {
        "operationId": "get_presence",
        "parameters": {"user_ids": "$response.body#/id"},
    },
}
# What the service accepts (ids are trimmed, and empty ones skipped, before the check): the
# document shows the plain form, 1 to 500 ids of 1 to 64 characters, comma-separated.
_ID = rf"[^,\x00{WHITESPACE}]{{1,64}}"
USER_IDS = rf"^{_ID}(,{_ID})*$"


@router.get(
    "/me",
    name="get_me",
    response_model=schemas.User,
    responses={**responses(), 200: {"links": ME_LINKS}},
)
async def get_me(actor: CurrentActor, work: WorkDep, services: ServicesDep) -> schemas.User:
    """The caller, with presence."""
    return await users.describe(work, services.presence, actor, actor.user_id)


@router.get(
    "/users/{user_id}",
    name="get_user",
    response_model=schemas.User,
    responses=responses(ErrorCode.USER_NOT_FOUND, ErrorCode.VALIDATION_FAILED),
)
async def get_user(
    user_id: str, actor: CurrentActor, work: WorkDep, services: ServicesDep
) -> schemas.User:
    """A user who shares a room with the caller: name, online, last seen."""
    return await users.describe(work, services.presence, actor, user_id)


@router.get(
    "/presence",
    name="get_presence",
    tags=["presence"],
    response_model=schemas.PresenceList,
    responses=responses(ErrorCode.FORBIDDEN, ErrorCode.VALIDATION_FAILED),
)
async def get_presence(
    user_ids: Annotated[
        str,
        Query(
            description="Comma-separated user ids, at most 500.",
            json_schema_extra={"pattern": USER_IDS},
        ),
    ],
    actor: CurrentActor,
    services: ServicesDep,
) -> schemas.PresenceList:
    """Presence of users who share a room with the caller."""
    ids = [u for u in (part.strip() for part in user_ids.split(",")) if u]
    if not ids or not all(valid_user_id(u) for u in ids):
        raise ValidationFailed("user_ids must list 1 to 500 ids of at most 64 characters")
    view = await services.presence_reads.read(actor, ids)
    return schemas.PresenceList(items=view.states)
