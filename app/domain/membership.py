"""Group membership: who may add and remove whom, and what everyone is told."""

from __future__ import annotations

import uuid

from app import schemas
from app.domain import pushes
from app.domain.access import MANAGERS, require_manager, require_member
from app.domain.events import MembershipChanged, RoomMessage, UserFrame
from app.domain.limits import Limits
from app.domain.ports import Actor, Work
from app.domain.rooms import snapshot
from app.domain.text import valid_user_id
from app.errors import Conflict, Forbidden, NotAMember, ValidationFailed
from app.infra.db.queries import members, rooms, users

# Who may remove whom: an owner anyone, an admin only plain members.
_OUTRANKS = {"owner": {"admin", "member"}, "admin": {"member"}}


async def _group(work: Work, room_id: uuid.UUID) -> int:
    """Lock a group's row (membership changes of one room serialize) and return last_seq."""
    row = await rooms.get_room(work.session, room_id)
    assert row is not None
    if row["kind"] == "direct":
        raise Forbidden("a private room always has exactly its two members")
    return await rooms.lock_room(work.session, room_id)


async def add_member(
    work: Work, actor: Actor, room_id: uuid.UUID, user_id: str, role: str, limits: Limits
) -> schemas.Room:
    me = await require_manager(work.session, room_id, actor.user_id)
    if not valid_user_id(user_id):
        raise ValidationFailed("a user id is 1 to 64 characters without NUL")
    if role == "admin" and me["role"] != "owner":
        raise Forbidden("only the owner may appoint admins")
    last_seq = await _group(work, room_id)
    if await members.count_members(work.session, room_id) >= limits.max_group_members:
        raise ValidationFailed(f"a group has at most {limits.max_group_members} members")
    await users.ensure_users(work.session, [user_id])
    if not await members.add_members(work.session, room_id, {user_id: role}, last_seq):
        raise Conflict("already a member")
    await rooms.touch(work.session, room_id)
    room = await snapshot(work, room_id)
    frame = pushes.room("member_added", str(room_id), user_id=user_id, snapshot=room)
    # The newcomer's connections follow the room from now on; they hear of it directly,
    # since their subscription may not be in place when the room-wide push goes out (and
    # are left out of that push, which would otherwise reach those already following).
    work.log.emit(MembershipChanged(str(room_id), user_id, "added"))
    work.log.emit(RoomMessage(str(room_id), frame, skip_user=user_id))
    work.log.emit(UserFrame((user_id,), frame))
    return room


async def remove_member(work: Work, actor: Actor, room_id: uuid.UUID, user_id: str) -> None:
    """Remove `user_id` (an owner or admin removing someone) or leave (removing oneself)."""
    me = await require_member(work.session, room_id, actor.user_id)
    await _group(work, room_id)
    if user_id != actor.user_id:
        if me["role"] not in MANAGERS:
            raise Forbidden("only the room's owner or an admin may remove members")
        target = (
            await members.get_member(work.session, room_id, user_id)
            if valid_user_id(user_id)
            else None
        )
        if target is None:
            raise NotAMember("that user is not a member of this room")
        if target["role"] not in _OUTRANKS[me["role"]]:
            raise Forbidden("an admin may remove only plain members")
    await members.remove_member(work.session, room_id, user_id)
    if user_id == actor.user_id and me["role"] == "owner":
        heir = await members.successor(work.session, room_id)
        if heir is not None:
            await members.set_role(work.session, room_id, heir, "owner")
    await rooms.touch(work.session, room_id)
    room = await snapshot(work, room_id)
    frame = pushes.room("member_removed", str(room_id), user_id=user_id, snapshot=room)
    # Unfollow first, so the removed member's sockets get nothing more from the room.
    work.log.emit(MembershipChanged(str(room_id), user_id, "removed"))
    work.log.emit(RoomMessage(str(room_id), frame))
    work.log.emit(
        UserFrame((user_id,), pushes.room("member_removed", str(room_id), user_id=user_id))
    )
