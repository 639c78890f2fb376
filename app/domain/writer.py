"""The send path: messages stored in batches by ordered lanes (see `lanes.py`).

A batch is one statement (`batched.send_all`), atomic by itself, with no transaction
around it: membership for the whole batch, the rooms locked in id order (writers on
other lanes or instances can never deadlock, and a room's seq moves only under its
lock, so it has no gap), every new message inserted with its room's next seqs and the
counters moved. A batch with a key already stored (a retry) runs again as a transaction
of a few statements that looks its keys up first. Pushes go out after the commit; each
caller gets its own answer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app import schemas
from app.domain import pushes, views
from app.domain.events import RoomMessage
from app.domain.lanes import LANES, Lanes, Turn
from app.domain.limits import Limits
from app.domain.messages import check_content
from app.domain.ports import Actor, BatchWork, BatchWorkFactory
from app.errors import ChatError, Conflict, RoomNotFound, Unavailable
from app.infra.db.queries import batched

RETRIES = 3


@dataclass(slots=True)
class _Send:
    actor: Actor
    room_id: uuid.UUID
    draft: schemas.MessageSend
    connection_id: str | None

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return self.actor.user_id, self.draft.client_msg_id


class _ConcurrentDuplicate(Exception):
    """A key in the batch was committed by another writer meanwhile: start over."""


class MessageWriter:
    def __init__(
        self,
        work: BatchWorkFactory,
        limits: Limits,
        *,
        on_stored: Callable[[int], None] = lambda _: None,
        on_batch: Callable[[int], None] = lambda _: None,
        lanes: int = LANES,
    ) -> None:
        self._work = work
        self._limits = limits
        self._on_stored = on_stored
        self._lanes: Lanes[_Send, schemas.Message] = Lanes(
            "writer", self._write, lanes=lanes, on_batch=on_batch
        )

    def start(self) -> None:
        self._lanes.start()

    async def stop(self) -> None:
        await self._lanes.stop()

    async def send(
        self,
        actor: Actor,
        room_id: uuid.UUID,
        draft: schemas.MessageSend,
        connection_id: str | None = None,
    ) -> schemas.Message:
        """Store a message with the room's next seq, or return the one this client_msg_id
        already made (by any route, at any time); answered once committed."""
        return await self.enqueue(actor, room_id, draft, connection_id)

    def enqueue(
        self,
        actor: Actor,
        room_id: uuid.UUID,
        draft: schemas.MessageSend,
        connection_id: str | None = None,
    ) -> asyncio.Future[schemas.Message]:
        """`send`, answered by a future instead of awaited (see `Lanes.enqueue`)."""
        check_content(draft, self._limits)
        return self._lanes.enqueue(room_id, _Send(actor, room_id, draft, connection_id))

    async def _write(self, batch: list[_Send], turn: Turn) -> list[schemas.Message | ChatError]:
        # Almost always one statement (`batched.send_all`). Idempotency keys are looked
        # up only when a key met one already stored (a client's retry, or the same key
        # sent concurrently elsewhere) or repeats within the batch: rare, and then the
        # batch runs as a transaction that looks its keys up first.
        if len({item.key for item in batch}) == len(batch):
            try:
                async with self._work(in_transaction=False) as work:
                    return await self._store_at_once(work, batch, turn)
            except batched.KeyTaken:
                pass
        # Committed only as the transaction ends: too late to start the next batch early.
        await turn.in_turn()
        for attempt in range(RETRIES):
            try:
                async with self._work() as work:
                    return await self._store(work, batch)
            except _ConcurrentDuplicate:
                if attempt == RETRIES - 1:
                    raise Unavailable("too many concurrent retries; retry shortly") from None
        raise AssertionError("unreachable")

    async def _store_at_once(
        self, work: BatchWork, batch: list[_Send], turn: Turn
    ) -> list[schemas.Message | ChatError]:
        rows = [_row(item) for item in batch]
        stored = await batched.send_all(work.db, rows)
        await turn.stored()
        answers: list[schemas.Message | ChatError] = []
        for item, row in zip(batch, rows, strict=True):
            got = stored.get(row["id"])
            if got is None:
                answers.append(RoomNotFound("no such room"))
                continue
            message = _message(item, got["seq"], row["id"], got["created_at"])
            self._announce(work, item, message)
            answers.append(message)
        self._on_stored(len(stored))
        return answers

    async def _store(
        self, work: BatchWork, batch: list[_Send]
    ) -> list[schemas.Message | ChatError]:
        """The batch in a transaction, its keys looked up first."""
        db = work.db
        memberships = await batched.members_among(db, [(s.room_id, s.actor.user_id) for s in batch])
        accepted = [s for s in batch if (s.room_id, s.actor.user_id) in memberships]
        last_seq = await batched.lock_rooms(db, [s.room_id for s in accepted])
        stored = await batched.find_by_client_ids(db, [s.key for s in accepted])
        answers: dict[int, schemas.Message | ChatError] = {}
        planned: dict[tuple[str, uuid.UUID], tuple[_Send, int]] = {}
        for index, item in enumerate(batch):
            if (item.room_id, item.actor.user_id) not in memberships:
                answers[index] = RoomNotFound("no such room")
            elif item.key in stored:
                answers[index] = _same_room(views.message(stored[item.key]), item)
            elif item.key not in planned:
                last_seq[item.room_id] += 1
                planned[item.key] = (item, last_seq[item.room_id])
        rows = [{**_row(item), "seq": seq} for item, seq in planned.values()]
        moved = {row["room_id"]: last_seq[row["room_id"]] for row in rows}
        inserted = await batched.insert_messages(db, rows, moved)
        if len(inserted) != len(rows):
            raise _ConcurrentDuplicate
        by_key: dict[tuple[str, uuid.UUID], schemas.Message] = {}
        for returned in inserted:
            item, seq = planned[(returned["sender_id"], returned["client_msg_id"])]
            message = _message(item, seq, returned["id"], returned["created_at"])
            by_key[item.key] = message
            self._announce(work, item, message)
        self._on_stored(len(inserted))
        for index, item in enumerate(batch):
            if index not in answers:
                answers[index] = _same_room(by_key[item.key], item)
        return [answers[i] for i in range(len(batch))]

    @staticmethod
    def _announce(work: BatchWork, item: _Send, message: schemas.Message) -> None:
        work.log.emit(
            RoomMessage(
                str(message.room_id),
                pushes.message(message),
                skip_connection=item.connection_id,
                seq=message.seq,
            )
        )


def _row(item: _Send) -> dict[str, Any]:
    draft = item.draft
    return {
        "id": uuid.uuid4(),
        "room_id": item.room_id,
        "sender_id": item.actor.user_id,
        "kind": draft.kind,
        "body": draft.body,
        "attachment": draft.attachment.model_dump() if draft.attachment else None,
        "client_msg_id": draft.client_msg_id,
    }


def _message(item: _Send, seq: int, message_id: uuid.UUID, created_at: datetime) -> schemas.Message:
    draft = item.draft
    # Every field is already of its type (the draft was validated, the rest comes from
    # PostgreSQL): built without validating again, on the hot path.
    return schemas.Message.model_construct(
        id=message_id,
        room_id=item.room_id,
        seq=seq,
        sender_id=item.actor.user_id,
        kind=draft.kind,
        body=draft.body,
        attachment=draft.attachment,
        client_msg_id=draft.client_msg_id,
        created_at=created_at,
        edited_at=None,
        deleted=False,
    )


def _same_room(message: schemas.Message, item: _Send) -> schemas.Message | ChatError:
    if message.room_id != item.room_id:
        return Conflict("this client_msg_id was already used for a message in another room")
    return message
