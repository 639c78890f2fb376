"""Client frames routed by type through explicit tables: `HANDLERS` (awaited, returning
ack data) and `HANDOFFS` (writes queued on their lane, acked from the result).

Handlers are thin: they open a unit of work and call the same domain services as REST.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app import schemas
from app.auth.tokens import Claims
from app.domain import pushes, sync, watermarks
from app.domain.ports import Actor, Work
from app.errors import Unauthorized
from app.lifespan import Services
from app.work import unit_of_work
from app.ws import frames
from app.ws.connection import Connection


@dataclass(slots=True)
class Peer:
    """One authenticated connection and what its handlers need."""

    services: Services
    connection: Connection
    actor: Actor

    def work(self) -> AbstractAsyncContextManager[Work]:
        return unit_of_work(self.services.sessions, self.services.fanout, self.connection.id)

    def renew(self, claims: Claims) -> None:
        if claims.sub != self.actor.user_id:
            raise Unauthorized("a renewed token must be for the same user")
        self.connection.expires_at = claims.expires_at


def authenticated(user_id: str, expires_at: datetime) -> dict[str, Any]:
    """The data of the ack to an `auth` frame, the first one or a renewal (`expires_at`
    in the contract's `Z` form)."""
    return {"user_id": user_id, "expires_at": pushes.iso_utc(expires_at)}


async def on_auth(peer: Peer, frame: frames.AuthFrame) -> dict[str, Any]:
    peer.renew(peer.services.verifier.verify(frame.token))
    return authenticated(peer.actor.user_id, peer.connection.expires_at)


def _hand_send(peer: Peer, frame: frames.SendFrame) -> asyncio.Future[schemas.Message]:
    return peer.services.writer.enqueue(peer.actor, frame.room_id, frame, peer.connection.id)


def _sent(message: schemas.Message) -> dict[str, Any]:
    return {"message": message.as_json()}


async def on_sync(peer: Peer, frame: frames.SyncFrame) -> dict[str, Any]:
    async with peer.work() as work:
        result = await sync.sync(work, peer.actor, frame.cursors, frame.limit)
    await peer.services.watermark_writer.mark_all(result.acknowledged)
    # A replay cut short by a close is never acked: the ack is dropped with the rest.
    await _replay(peer, result.messages)
    return {
        "rooms": {
            str(room_id): {"last_seq": r.last_seq, "has_more": r.has_more}
            for room_id, r in result.rooms.items()
        }
    }


async def _replay(peer: Peer, messages: list[schemas.Message]) -> None:
    """Push `messages`, in order, no faster than the client takes them.

    A batch of a quarter of the outbox goes out only once less than a quarter waits, so a
    replay never fills more than half of it: the other half is for live pushes meanwhile,
    which still overflow it only as they would without a replay. A client that takes
    nothing for two heartbeats (as long as the keepalive waits for a pong) is closed.
    """
    connection = peer.connection
    batch = max(1, connection.outbox_size // 4)
    stall_s = 2 * peer.services.settings.heartbeat_s
    for start in range(0, len(messages), batch):
        if not await connection.backlog_under(batch, stall_s):
            return  # closing: the client reconnects and syncs again
        for message in messages[start : start + batch]:
            frame = frames.MessageFrame(type="message", message=message)
            connection.push(frame.model_dump_json())


def _hand_delivered(peer: Peer, frame: frames.DeliveredFrame) -> asyncio.Future[schemas.Watermarks]:
    mark = watermarks.Mark(peer.actor, frame.room_id, frame.seq, 0, peer.connection.id)
    return peer.services.watermark_writer.enqueue(mark)


def _hand_read(peer: Peer, frame: frames.ReadFrame) -> asyncio.Future[schemas.Watermarks]:
    mark = watermarks.Mark(peer.actor, frame.room_id, 0, frame.seq, peer.connection.id)
    return peer.services.watermark_writer.enqueue(mark)


def _moved(moved: schemas.Watermarks) -> dict[str, Any]:
    return moved.model_dump(mode="json")


async def on_typing(peer: Peer, frame: frames.TypingFrame) -> dict[str, Any]:
    await peer.services.typing.update(
        peer.connection.id,
        peer.actor.user_id,
        str(frame.room_id),
        frame.active,
        peer.connection.rooms,
    )
    return {}


@dataclass(slots=True)
class Reply:
    """A handler's ack data, and what to do once the ack has gone out (in its place among
    the connection's answers, which can be after the handler returned)."""

    data: dict[str, Any]
    then: Callable[[], None]


async def on_presence_watch(peer: Peer, frame: frames.PresenceWatchFrame) -> Reply:
    fanout, conn = peer.services.fanout, peer.connection
    # Reports that come while the answer is made wait for it (`app.ws.holds`).
    fanout.hold_presence(conn)
    try:
        view = await peer.services.presence_reads.watch(
            peer.actor, frame.user_ids, functools.partial(fanout.watch, conn), list(conn.watching)
        )
    except BaseException:
        fanout.release_presence(conn, None)
        raise
    data = {"presence": [s.model_dump(mode="json") for s in view.states]}
    return Reply(data, functools.partial(fanout.release_presence, conn, view.versions))


Handler = Callable[[Peer, Any], Awaitable[dict[str, Any] | Reply]]
# A write handed to its lane without a task waiting for it, and how its result is acked.
Handoff = tuple[Callable[[Peer, Any], "asyncio.Future[Any]"], Callable[[Any], dict[str, Any]]]

HANDLERS: dict[type[frames.ClientFrame], Handler] = {
    frames.AuthFrame: on_auth,
    frames.SyncFrame: on_sync,
    frames.TypingFrame: on_typing,
    frames.PresenceWatchFrame: on_presence_watch,
}

# The writes, which only wait for their lane: the frame reader hands them over and is
# called back with the result, with no task waiting (the other frames are in `HANDLERS`).
HANDOFFS: dict[type[frames.ClientFrame], Handoff] = {
    frames.SendFrame: (_hand_send, _sent),
    frames.DeliveredFrame: (_hand_delivered, _moved),
    frames.ReadFrame: (_hand_read, _moved),
}
