"""Messages: content rules, history pages, edits and tombstones. Sends go through the
batching writer (`writer.py`); REST and the WebSocket share every function here."""

from __future__ import annotations

import uuid

from app import schemas
from app.domain import pushes, views
from app.domain.access import require_member
from app.domain.events import RoomMessage
from app.domain.limits import Limits
from app.domain.ports import Actor, Work
from app.errors import Conflict, Forbidden, MessageNotFound, PayloadTooLarge, ValidationFailed
from app.infra.db.queries import messages


def _check_body(body: str | None, kind: str, limits: Limits) -> None:
    if body is not None and len(body) > limits.max_body_chars:
        raise PayloadTooLarge(f"body is longer than {limits.max_body_chars} characters")
    if kind == "text" and (body is None or not body.strip()):
        raise ValidationFailed("a text message needs a non-blank body")


def check_content(draft: schemas.MessageSend, limits: Limits) -> None:
    _check_body(draft.body, draft.kind, limits)
    if draft.kind == "text" and draft.attachment is not None:
        raise ValidationFailed("a text message carries no attachment")
    if draft.kind != "text" and draft.attachment is None:
        raise ValidationFailed(f"an {draft.kind} message needs an attachment")


async def history(
    work: Work,
    actor: Actor,
    room_id: uuid.UUID,
    *,
    before: int | None,
    after: int | None,
    limit: int,
    limits: Limits,
) -> schemas.MessagePage:
    """A page by seq, ascending. `next_cursor` continues in the same direction: pass it
    as `after` when paging with `after`, otherwise as `before`."""
    if not 1 <= limit <= limits.max_page_size:
        raise ValidationFailed(f"limit must be between 1 and {limits.max_page_size}")
    await require_member(work.session, room_id, actor.user_id)
    # One row past the page says whether another page follows (null on the last one).
    rows = await messages.page(work.session, room_id, before=before, after=after, limit=limit + 1)
    items = [views.message(row) for row in rows]
    more = len(items) > limit
    if after is not None:
        items = items[:limit]
        next_cursor = str(items[-1].seq) if more else None
    else:
        items = items[-limit:]
        next_cursor = str(items[0].seq) if more else None
    return schemas.MessagePage(items=items, next_cursor=next_cursor)


async def _own_message(
    work: Work, actor: Actor, room_id: uuid.UUID, message_id: uuid.UUID
) -> schemas.Message:
    await require_member(work.session, room_id, actor.user_id)
    row = await messages.get_message(work.session, room_id, message_id, lock=True)
    if row is None:
        raise MessageNotFound("no such message in this room")
    if row["sender_id"] != actor.user_id:
        raise Forbidden("only the sender may change a message")
    return views.message(row)


def _announce_update(work: Work, message: schemas.Message) -> None:
    work.log.emit(RoomMessage(str(message.room_id), pushes.message_updated(message)))


async def edit(
    work: Work,
    actor: Actor,
    room_id: uuid.UUID,
    message_id: uuid.UUID,
    body: str,
    limits: Limits,
) -> schemas.Message:
    current = await _own_message(work, actor, room_id, message_id)
    if current.deleted:
        raise Conflict("a deleted message cannot be edited")
    _check_body(body, current.kind, limits)
    updated = views.message(await messages.edit(work.session, message_id, body))
    _announce_update(work, updated)
    return updated


async def delete(
    work: Work, actor: Actor, room_id: uuid.UUID, message_id: uuid.UUID
) -> schemas.Message:
    """Tombstone a message; deleting it again changes nothing and announces nothing."""
    current = await _own_message(work, actor, room_id, message_id)
    if current.deleted:
        return current
    tombstone = views.message(await messages.tombstone(work.session, message_id))
    _announce_update(work, tombstone)
    return tombstone
