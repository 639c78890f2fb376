"""A connection from its `hello` to its leave, with no task of its own while it is idle.

Once a socket is set up the endpoint returns, and the protocol hands the socket's messages
to its session (`ChatWebSocketProtocol.detach`): ten thousand idle sockets then hold no
coroutine chain through uvicorn, Starlette and the middleware, only a few small objects
each. The session ends when the client goes (once the frames it sent before are under
way) or when this side closes the socket (an overflow, an expired token, shutdown); it
then leaves, in a task that a graceful shutdown waits for.
"""

from __future__ import annotations

import asyncio
import contextvars

import structlog
from redis.exceptions import RedisError

from app.domain import presence
from app.domain.ports import Actor
from app.infra.failures import store_down
from app.lifespan import Services
from app.work import unit_of_work
from app.ws.connection import Connection
from app.ws.dispatch import Peer
from app.ws.expiry import Expiry
from app.ws.liveness import last_sign_of_life
from app.ws.reader import FrameReader

log = structlog.get_logger("chat.ws")

CLOSE_INTERNAL = 1011


class Session:
    __slots__ = ("_actor", "_connection", "_context", "_ended", "_expiry", "_reader", "_services")

    def __init__(
        self, services: Services, connection: Connection, actor: Actor, expiry: Expiry
    ) -> None:
        self._services = services
        self._connection = connection
        self._actor = actor
        self._expiry = expiry
        self._reader = FrameReader(Peer(services, connection, actor), self._end)
        # The caller's context, with the connection's log fields bound: every frame is
        # handled in it, as it was in the endpoint's task.
        self._context = contextvars.copy_context()
        self._ended = False

    def start(self) -> None:
        """Take over the socket from the endpoint, which then returns."""
        self._expiry.start(self._reader.waiting_renewal)
        self._connection.on_closed = self._end
        self._connection.protocol.detach(self)

    def on_message(self, data: str | bytes) -> None:
        try:
            self._context.run(self._reader.take, data)
        except Exception:
            # Raised into the protocol's callback, it would cut the socket without a word
            # (and without a trace in the log): close it as the contract says instead.
            self._context.run(log.exception, "ws_message_failed")
            self._connection.close(CLOSE_INTERNAL, "an unexpected error occurred")

    def on_end(self) -> None:
        self._context.run(self._reader.end)

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        self._expiry.stop()
        self._connection.on_closed = None
        task = asyncio.create_task(self._leave(), context=self._context)
        self._connection.protocol.track(task)

    async def _leave(self) -> None:
        try:
            await leave(self._services, self._connection, self._actor)
        except Exception:  # no task waits for this one: its failure must reach the log
            log.exception("ws_leave_failed")


async def leave(services: Services, connection: Connection, actor: Actor) -> None:
    """Stop following, and tell presence the connection is gone."""
    last_seen = last_sign_of_life(connection.protocol, connection.last_frame_at)
    await services.typing.connection_closed(connection.id)
    await services.fanout.remove(connection)
    await connection.finish()
    try:
        went_offline = await presence.leave(services.presence, actor.user_id, connection.id)
    except (RedisError, OSError) as exc:
        # Settled by the heartbeat once Redis answers, with this last seen.
        log.warning("presence_leave_deferred", error=type(exc).__name__)
        services.heartbeat.leave_later(actor.user_id, connection.id, last_seen)
        went_offline = False
    if went_offline:
        now = await presence.now(services.presence, [actor.user_id], assumed_online=False)
        try:
            async with unit_of_work(services.sessions, services.fanout) as work:
                await presence.record_offline(work, [(actor.user_id, last_seen)], now)
        except Exception as exc:
            # A pool time-out too (thousands of sockets dropped at once), which used to
            # escape here and leave the last seen unrecorded.
            if not store_down(exc):
                raise
            # The heartbeat records it once PostgreSQL answers, if the user is still away.
            log.warning("last_seen_deferred", error=type(exc).__name__)
            services.heartbeat.offline_later(actor.user_id, last_seen)
    log.info("ws_closed", code=connection.close_code)
