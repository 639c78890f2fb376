"""Presence as users see it: online from the live-connection registry, last seen from
PostgreSQL, and only for users who share a room with the viewer."""

from __future__ import annotations

from collections.abc import Sequence

from app import schemas
from app.domain.ports import Actor, PresenceReader, Work
from app.errors import Forbidden, ValidationFailed
from app.infra.db.queries import users

MAX_WATCHED = 500


async def visible_to(work: Work, actor: Actor, user_ids: Sequence[str]) -> set[str]:
    """The subset of user_ids the actor may see: themselves and anyone sharing a room."""
    others = {u for u in user_ids if u != actor.user_id}
    shared = await users.sharing_a_room(work.session, actor.user_id, others) if others else set()
    return shared | ({actor.user_id} & set(user_ids))


async def presence_of(
    work: Work, presence: PresenceReader, actor: Actor, user_ids: Sequence[str]
) -> list[schemas.Presence]:
    """Presence of each user; refused as a whole if any one shares no room with the actor."""
    wanted = list(dict.fromkeys(user_ids))
    if len(wanted) > MAX_WATCHED:
        raise ValidationFailed(f"at most {MAX_WATCHED} users at once")
    if set(wanted) - await visible_to(work, actor, wanted):
        raise Forbidden("presence is shown only for users who share a room with you")
    return await states(work, presence, wanted)


async def states(
    work: Work, presence: PresenceReader, user_ids: Sequence[str]
) -> list[schemas.Presence]:
    rows = {row["id"]: row for row in await users.get_users(work.session, user_ids)}
    online = await presence.online(user_ids)
    return [
        schemas.Presence(
            user_id=user_id,
            online=user_id in online,
            last_seen=rows[user_id]["last_seen_at"] if user_id in rows else None,
        )
        for user_id in user_ids
    ]
