"""Users: first sight from a token, and who may look up whom."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from app import schemas
from app.domain import presence as presence_rules
from app.domain.ports import Actor, PresenceReader, Work
from app.domain.text import valid_user_id
from app.errors import UserNotFound
from app.infra.db.queries import users


async def sign_in(work: Work, actor: Actor) -> None:
    """Create the user row on first sight of a `sub`; keep the display name current."""
    await users.upsert_user(work.session, actor.user_id, actor.name)


async def describe(
    work: Work, presence: PresenceReader, actor: Actor, user_id: str
) -> schemas.User:
    """A user the actor may see (themselves or someone sharing a room); otherwise not found."""
    if not valid_user_id(user_id) or not await presence_rules.visible_to(work, actor, [user_id]):
        raise UserNotFound("no such user")
    rows = await users.get_users(work.session, [user_id])
    if not rows:
        raise UserNotFound("no such user")
    online = await presence.online([user_id])
    return schemas.User(
        id=user_id,
        name=rows[0]["name"],
        online=user_id in online,
        last_seen=rows[0]["last_seen_at"],
    )


class KnownUsers:
    """Users whose row this instance has already written (with this display name), so a
    request does not rewrite it: one statement saved on every authenticated call."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._names: OrderedDict[str, str | None] = OrderedDict()
        self._capacity = capacity

    def known(self, actor: Actor) -> bool:
        if actor.user_id not in self._names or self._names[actor.user_id] != actor.name:
            return False
        self._names.move_to_end(actor.user_id)
        return True

    def remember(self, actor: Actor) -> None:
        self._names[actor.user_id] = actor.name
        self._names.move_to_end(actor.user_id)
        while len(self._names) > self._capacity:
            self._names.popitem(last=False)


async def ensure_known(
    known: KnownUsers, work: Callable[[], AbstractAsyncContextManager[Work]], actor: Actor
) -> None:
    """Create or rename the user row, committed on its own before the caller's work, so
    that rows referring to the user (a message stored by the writer) can see it."""
    if not known.known(actor):
        async with work() as unit:
            await sign_in(unit, actor)
        known.remember(actor)
