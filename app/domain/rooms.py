"""Rooms: the one private room per pair, groups, the caller's room list, renames."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from app import schemas
from app.domain import cursors, pushes, views
from app.domain.access import require_manager, require_member
from app.domain.events import MembershipChanged, RoomMessage, UserFrame
from app.domain.limits import Limits
from app.domain.ports import Actor, Work
from app.domain.text import storable, valid_user_id
from app.errors import Forbidden, RoomNotFound, ValidationFailed
from app.infra.db.queries import members, rooms, users


def _clean_name(name: str, limits: Limits) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValidationFailed("name must not be blank")
    if not storable(cleaned):
        raise ValidationFailed("name must not contain NUL characters")
    if len(cleaned) > limits.max_name_chars:
        raise ValidationFailed(f"name is longer than {limits.max_name_chars} characters")
    return cleaned


async def snapshot(work: Work, room_id: uuid.UUID) -> schemas.Room:
    row = await rooms.get_room(work.session, room_id)
    if row is None:
        raise RoomNotFound("no such room")
    grouped = await members.list_members(work.session, [room_id])
    return views.room(row, grouped.get(room_id, []))


def _announce_created(work: Work, room: schemas.Room) -> None:
    ids = tuple(m.user_id for m in room.members)
    for user_id in ids:
        work.log.emit(MembershipChanged(str(room.id), user_id, "added"))
    work.log.emit(UserFrame(ids, pushes.room("created", str(room.id), snapshot=room)))


async def open_direct(work: Work, actor: Actor, other_id: str) -> tuple[schemas.Room, bool]:
    """The one private room of the actor and `other_id`, created on first ask.

    Returns (room, created). Two racing first asks both end with the same room: the
    sorted pair is unique, and the loser of the insert reads the winner's row.
    """
    if other_id == actor.user_id:
        raise ValidationFailed("a private room needs another user")
    if not valid_user_id(other_id):
        raise ValidationFailed("a user id is 1 to 64 characters without NUL")
    low, high = sorted((actor.user_id, other_id))
    existing = await rooms.find_direct(work.session, (low, high))
    if existing is not None:
        return await snapshot(work, existing["id"]), False
    await users.ensure_users(work.session, [other_id])
    created = await rooms.insert_room(work.session, "direct", None, (low, high))
    if created is None:
        existing = await rooms.find_direct(work.session, (low, high))
        assert existing is not None
        return await snapshot(work, existing["id"]), False
    await members.add_members(
        work.session, created["id"], {actor.user_id: "member", other_id: "member"}, 0
    )
    room = await snapshot(work, created["id"])
    _announce_created(work, room)
    return room, True


async def create_group(
    work: Work, actor: Actor, name: str, member_ids: list[str], limits: Limits
) -> schemas.Room:
    """A group owned by the actor, with the given members (duplicates and the actor ignored)."""
    others = [m for m in dict.fromkeys(member_ids) if m != actor.user_id]
    for user_id in others:
        if not valid_user_id(user_id):
            raise ValidationFailed("member ids are 1 to 64 characters without NUL")
    if len(others) + 1 > limits.max_group_members:
        raise ValidationFailed(f"a group has at most {limits.max_group_members} members")
    row = await rooms.insert_room(work.session, "group", _clean_name(name, limits))
    assert row is not None
    await users.ensure_users(work.session, others)
    roles = {actor.user_id: "owner"} | {user_id: "member" for user_id in others}
    await members.add_members(work.session, row["id"], roles, 0)
    room = await snapshot(work, row["id"])
    _announce_created(work, room)
    return room


async def get_room(work: Work, actor: Actor, room_id: uuid.UUID) -> schemas.Room:
    await require_member(work.session, room_id, actor.user_id)
    return await snapshot(work, room_id)


async def rename(
    work: Work, actor: Actor, room_id: uuid.UUID, name: str, limits: Limits
) -> schemas.Room:
    await require_manager(work.session, room_id, actor.user_id)
    row = await rooms.get_room(work.session, room_id)
    assert row is not None
    if row["kind"] == "direct":
        raise Forbidden("a private room has no name to change")
    await rooms.rename(work.session, room_id, _clean_name(name, limits))
    room = await snapshot(work, room_id)
    work.log.emit(RoomMessage(str(room_id), pushes.room("updated", str(room_id), snapshot=room)))
    return room


async def list_rooms(
    work: Work, actor: Actor, cursor: str | None, limit: int, limits: Limits
) -> schemas.RoomPage:
    if not 1 <= limit <= limits.max_page_size:
        raise ValidationFailed(f"limit must be between 1 and {limits.max_page_size}")
    after: tuple[datetime, uuid.UUID] | None = None
    if cursor is not None:
        at, room_id = cursors.decode(cursor, 2)
        try:
            at_time = datetime.fromisoformat(str(at))
            if at_time.tzinfo is None:
                raise ValueError("a cursor time carries its offset")
            # Normalised here: a time that leaves the calendar in UTC is refused, not sent on.
            after = (at_time.astimezone(UTC), uuid.UUID(str(room_id)))
        except (ValueError, OverflowError) as exc:
            raise ValidationFailed("cursor is not one this service issued") from exc
    # One row more than asked tells whether another page exists, so the last page says so.
    rows = await rooms.list_for_user(work.session, actor.user_id, after, limit + 1)
    has_more = len(rows) > limit
    rows = rows[:limit]
    ids = [row["id"] for row in rows]
    grouped = await members.list_members(work.session, ids)
    last = await rooms.last_messages(work.session, [(r["id"], r["last_seq"]) for r in rows])
    items = [
        schemas.RoomSummary(
            **views.room(row, grouped.get(row["id"], [])).model_dump(),
            unread=row["unread"],
            last_message=views.message(last[row["id"]]) if row["id"] in last else None,
            read_seq=row["own_read_seq"],
            delivered_seq=row["own_delivered_seq"],
        )
        for row in rows
    ]
    next_cursor = None
    if has_more:
        tail = rows[-1]
        next_cursor = cursors.encode(tail["last_activity_at"].isoformat(), str(tail["id"]))
    return schemas.RoomPage(items=items, next_cursor=next_cursor)


async def room_ids_of(work: Work, user_id: str) -> list[str]:
    """The rooms a user's connections follow."""
    return [str(row["room_id"]) for row in await members.memberships_of(work.session, user_id)]
