"""Presence as users see it: online from the live-connection registry, last seen from
PostgreSQL, and only for users who share a room with the viewer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from app import schemas
from app.domain.events import PresenceChanged
from app.domain.ports import Actor, PresenceReader, PresenceStore, Work
from app.domain.pushes import iso_utc
from app.errors import Forbidden, RateLimited, ValidationFailed
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


def _frame(user_id: str, online: bool, last_seen: datetime | None) -> PresenceChanged:
    frame = {
        "type": "presence",
        "user_id": user_id,
        "online": online,
        "last_seen": iso_utc(last_seen) if last_seen else None,
    }
    return PresenceChanged(user_id, frame)


async def announce_online(work: Work, user_ids: Sequence[str]) -> None:
    """Tell watchers these users came online (with the last seen they had until now)."""
    rows = {row["id"]: row for row in await users.get_users(work.session, user_ids)}
    for user_id in user_ids:
        row = rows.get(user_id)
        work.log.emit(_frame(user_id, True, row["last_seen_at"] if row else None))


async def record_offline(work: Work, offline: Sequence[tuple[str, datetime]]) -> None:
    """Keep each user's last seen in PostgreSQL (it outlives Redis) and tell watchers."""
    for user_id, last_seen in offline:
        await users.set_last_seen(work.session, user_id, last_seen)
        work.log.emit(_frame(user_id, False, last_seen))


async def join(store: PresenceStore, user_id: str, connection_id: str, limit: int) -> bool:
    """Register a new connection; True when the user just came online.

    Refused with RATE_LIMITED when the user already has `limit` live connections.
    """
    admitted = await store.connect(user_id, connection_id, limit)
    if admitted < 0:
        raise RateLimited(f"at most {limit} connections per user")
    return admitted == 1


async def leave(store: PresenceStore, user_id: str, connection_id: str) -> bool:
    """Unregister a connection that ended; True when the user just went offline."""
    return await store.disconnect(user_id, connection_id)
