"""The send path: ordered writer lanes that store messages in batches.

A durable commit costs a disk flush (about 0.3 ms here) however many rows it carries, so
one message per transaction caps a node at a few thousand messages a second. Sends are
queued instead: each room hashes to one lane on this instance, so a room's sends keep
their order, and a lane stores everything waiting in it as one transaction: membership
for the whole batch in one query, the rooms locked in id order (writers on other lanes
or instances can never deadlock), idempotency keys looked up at once, every new message
inserted by one statement with the room's next seqs, and the counters moved by another.
Each caller gets its own answer, or its own error, only after the commit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from app import schemas
from app.domain import pushes, views
from app.domain.events import RoomMessage
from app.domain.limits import Limits
from app.domain.messages import check_content
from app.domain.ports import Actor, Work
from app.errors import ChatError, Conflict, RoomNotFound, Unavailable
from app.infra.db.queries import members, messages, rooms

log = structlog.get_logger(__name__)

MAX_BATCH = 128
LANES = 4
LANE_CAPACITY = 10_000
RETRIES = 3

WorkFactory = Callable[[], Any]


@dataclass(slots=True)
class _Send:
    actor: Actor
    room_id: uuid.UUID
    draft: schemas.MessageSend
    connection_id: str | None
    answer: asyncio.Future[schemas.Message] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return self.actor.user_id, self.draft.client_msg_id


class _ConcurrentDuplicate(Exception):
    """A key in the batch was committed by another writer meanwhile: start over."""


class MessageWriter:
    def __init__(
        self,
        work: WorkFactory,
        limits: Limits,
        *,
        on_stored: Callable[[int], None] = lambda _: None,
        lanes: int = LANES,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._work = work
        self._limits = limits
        self._on_stored = on_stored
        self._max_batch = max_batch
        self._queues: list[asyncio.Queue[_Send]] = [
            asyncio.Queue(LANE_CAPACITY) for _ in range(lanes)
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._lane(queue), name=f"writer-lane-{i}")
            for i, queue in enumerate(self._queues)
        ]

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Finish what is queued (bounded), then stop the lanes."""
        pending = [asyncio.create_task(q.join()) for q in self._queues]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
        for task in (*pending, *self._tasks):
            task.cancel()
        await asyncio.gather(*pending, *self._tasks, return_exceptions=True)

    async def send(
        self,
        actor: Actor,
        room_id: uuid.UUID,
        draft: schemas.MessageSend,
        connection_id: str | None = None,
    ) -> schemas.Message:
        """Store a message with the room's next seq, or return the one this client_msg_id
        already made (by any route, at any time); answered once committed."""
        check_content(draft, self._limits)
        item = _Send(actor, room_id, draft, connection_id)
        try:
            self._queues[hash(room_id) % len(self._queues)].put_nowait(item)
        except asyncio.QueueFull:
            raise Unavailable("the service is overloaded; retry shortly") from None
        return await item.answer

    async def _lane(self, queue: asyncio.Queue[_Send]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _write(self, batch: list[_Send]) -> None:
        failure: BaseException | None = None
        for _ in range(RETRIES):
            try:
                async with self._work() as work:
                    answers = await self._store(work, batch)
            except _ConcurrentDuplicate:
                continue
            except ChatError as exc:
                failure = exc
            except Exception as exc:  # a store failure fails the batch, never the lane
                log.warning("batch_failed", error=type(exc).__name__, size=len(batch))
                failure = Unavailable("the database is unavailable; nothing was stored")
            else:
                for item, answer in zip(batch, answers, strict=True):
                    if not item.answer.done():
                        if isinstance(answer, ChatError):
                            item.answer.set_exception(answer)
                        else:
                            item.answer.set_result(answer)
                return
            break
        failure = failure or Unavailable("could not store the batch; retry")
        for item in batch:
            if not item.answer.done():
                item.answer.set_exception(failure)

    async def _store(self, work: Work, batch: list[_Send]) -> list[schemas.Message | ChatError]:
        session = work.session
        memberships = await members.members_among(
            session, [(s.room_id, s.actor.user_id) for s in batch]
        )
        accepted = [s for s in batch if (s.room_id, s.actor.user_id) in memberships]
        last_seq = await rooms.lock_rooms(session, [s.room_id for s in accepted])
        stored = await messages.find_by_client_ids(session, [s.key for s in accepted])
        answers: dict[int, schemas.Message | ChatError] = {}
        planned: dict[tuple[str, uuid.UUID], _Send] = {}
        rows: list[dict[str, Any]] = []
        for index, item in enumerate(batch):
            if item not in accepted:
                answers[index] = RoomNotFound("no such room")
            elif item.key in stored:
                answers[index] = _same_room(views.message(stored[item.key]), item)
            elif item.key not in planned:
                planned[item.key] = item
                last_seq[item.room_id] += 1
                rows.append(_row(item, last_seq[item.room_id]))
        inserted = await messages.insert_many(session, rows)
        if len(inserted) != len(rows):
            raise _ConcurrentDuplicate
        by_key = {(r["sender_id"], r["client_msg_id"]): views.message(r) for r in inserted}
        for item in planned.values():
            message = by_key[item.key]
            work.log.emit(
                RoomMessage(
                    str(message.room_id),
                    pushes.message(message),
                    skip_connection=item.connection_id,
                )
            )
        await rooms.advance_many(session, {r["room_id"]: last_seq[r["room_id"]] for r in rows})
        self._on_stored(len(inserted))
        for index, item in enumerate(batch):
            if index not in answers:
                answers[index] = _same_room(by_key[item.key], item)
        return [answers[i] for i in range(len(batch))]


def _row(item: _Send, seq: int) -> dict[str, Any]:
    draft = item.draft
    return {
        "room_id": item.room_id,
        "seq": seq,
        "sender_id": item.actor.user_id,
        "kind": draft.kind,
        "body": draft.body,
        "attachment": draft.attachment.model_dump() if draft.attachment else None,
        "client_msg_id": draft.client_msg_id,
    }


def _same_room(message: schemas.Message, item: _Send) -> schemas.Message | ChatError:
    if message.room_id != item.room_id:
        return Conflict("this client_msg_id was already used for a message in another room")
    return message
