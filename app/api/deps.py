"""Named dependencies: routes read like signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.domain import users
from app.domain.limits import Limits
from app.domain.ports import Actor, Work
from app.errors import Unauthorized
from app.lifespan import Services
from app.work import unit_of_work


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_limits(services: ServicesDep) -> Limits:
    return services.limits


LimitsDep = Annotated[Limits, Depends(get_limits)]


async def request_work(services: ServicesDep) -> AsyncIterator[Work]:
    async with unit_of_work(services.sessions, services.fanout) as work:
        yield work


# "function" scope: the commit happens before the response is sent, so a failed commit
# is reported to the client instead of being lost after a 200.
WorkDep = Annotated[Work, Depends(request_work, scope="function")]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="A JWT whose `sub` is the user id.",
)


async def current_actor(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor:
    if credentials is None:
        raise Unauthorized("a bearer token is required")
    claims = services.verifier.verify(credentials.credentials)
    actor = Actor(user_id=claims.sub, name=claims.name, token_expires_at=claims.expires_at)
    await users.ensure_known(
        services.known_users, lambda: unit_of_work(services.sessions, services.fanout), actor
    )
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]
