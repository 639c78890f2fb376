"""`GET /v1/ws`: origin check, authentication, presence, `hello`; then the socket is
handed to its session (`session.py`), which handles its frames and its leave, and the
endpoint returns.

`hello` is the first frame of every connection: a push that comes while the connection
is being set up is held by the fan-out and follows the `hello` (and the ack of an `auth`
first frame)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, WebSocket
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect

from app.auth.tokens import Claims
from app.domain import presence, rooms, users
from app.domain.ports import Actor
from app.errors import ChatError, RateLimited
from app.infra.failures import store_down
from app.lifespan import Services
from app.work import unit_of_work
from app.ws import frames
from app.ws.connection import Connection
from app.ws.dispatch import authenticated
from app.ws.expiry import Expiry
from app.ws.protocol import protocol_of
from app.ws.reader import CLOSE_TOO_MANY
from app.ws.session import Session, leave

log = structlog.get_logger("chat.ws")
router = APIRouter()

CLOSE_AUTH = 4401
CLOSE_ORIGIN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TRY_LATER = 1013


def origin_allowed(websocket: WebSocket, allowed: list[str]) -> bool:
    """No Origin (not a browser), a listed origin, or the service's own origin (`/demo`)."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in allowed:
        return True
    return urlsplit(origin).netloc.lower() == websocket.headers.get("host", "").lower()


@dataclass(frozen=True, slots=True)
class Credentials:
    claims: Claims
    # The `auth` first frame they came in, answered after the `hello` like any frame;
    # None when they came in the Authorization header.
    frame: frames.AuthFrame | None


async def authenticate(websocket: WebSocket, services: Services) -> Credentials | None:
    """Claims from the Authorization header, or from an `auth` first frame in time."""
    header = websocket.headers.get("authorization")
    try:
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer":
                raise ChatError("bearer token expected")
            return Credentials(services.verifier.verify(token.strip()), None)
        try:
            raw = await asyncio.wait_for(websocket.receive_text(), services.settings.auth_timeout_s)
        except TimeoutError:
            await websocket.close(CLOSE_AUTH_TIMEOUT, "no auth frame in time")
            return None
        except WebSocketDisconnect:
            # Gone before authenticating (closed, vanished, or closed by the protocol layer
            # for invalid UTF-8 or an oversized frame): nothing to answer, nothing to log.
            return None
        frame = frames.parse(raw)
        if not isinstance(frame, frames.AuthFrame):
            raise ChatError("the first frame must be auth")
        return Credentials(services.verifier.verify(frame.token), frame)
    except (ChatError, frames.FrameError, KeyError, RuntimeError):
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(CLOSE_AUTH, "authentication failed")
        return None


@router.websocket("/v1/ws", name="websocket")
async def websocket_endpoint(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    if not origin_allowed(websocket, services.settings.allowed_origins):
        await websocket.close(CLOSE_ORIGIN, "origin not allowed")
        return
    credentials = await authenticate(websocket, services)
    if credentials is None:
        return
    claims = credentials.claims
    actor = Actor(user_id=claims.sub, name=claims.name, token_expires_at=claims.expires_at)
    connection = Connection(
        protocol_of(websocket), actor.user_id, claims.expires_at, services.settings.outbox_frames
    )
    with structlog.contextvars.bound_contextvars(
        connection_id=connection.id, user_id=actor.user_id
    ):
        await _serve(services, connection, actor, credentials.frame)


async def _serve(
    services: Services, connection: Connection, actor: Actor, auth: frames.AuthFrame | None
) -> None:
    gate = services.connect_gate  # see `admission.py`
    if gate.full:
        connection.close(CLOSE_TRY_LATER, "too many connections being set up; retry shortly")
        await connection.closed.wait()
        return
    joined = handed_over = False
    try:
        async with gate.turn():
            if connection.peer_gone():
                return  # the client gave up while it waited: nothing to set up
            try:
                came_online = await presence.join(
                    services.presence,
                    actor.user_id,
                    connection.id,
                    services.settings.max_connections_per_user,
                )
            except RateLimited:
                connection.close(CLOSE_TOO_MANY, "too many connections for this user")
                await connection.closed.wait()
                return
            except (RedisError, OSError) as exc:
                # Redis down: serve anyway (PostgreSQL holds the truth); the heartbeat
                # registers this connection once Redis is back.
                log.warning("presence_unavailable", error=type(exc).__name__)
                came_online = False
            joined = True
            ready = await _set_up(services, connection, actor, came_online, auth)
        if ready:
            Session(services, connection, actor, Expiry(connection, CLOSE_AUTH)).start()
            handed_over = True
    finally:
        # Not gated: a leave holds no store for long, and leaves queued behind a storm's
        # setups would keep users online (and their clients' retries waiting) for longer.
        if joined and not handed_over:
            await leave(services, connection, actor)


async def _set_up(
    services: Services,
    connection: Connection,
    actor: Actor,
    came_online: bool,
    auth: frames.AuthFrame | None,
) -> bool:
    """Follow the user's rooms and say hello (and answer an `auth` first frame); False if
    a store failed (closed with 1013)."""
    fanout = services.fanout
    # Follow the user's channel before reading their rooms: a room joined in between is
    # then announced to this connection rather than missed. Held: what comes for it
    # before its `hello` waits until the `hello` has gone.
    await fanout.add(connection, [], held=True)
    try:
        await users.ensure_known(
            services.known_users,
            lambda: unit_of_work(services.sessions, fanout, connection.id),
            actor,
        )
        announce = (
            await presence.now(services.presence, [actor.user_id], assumed_online=True)
            if came_online
            else None
        )
        async with unit_of_work(services.sessions, fanout, connection.id) as work:
            room_ids = await rooms.room_ids_of(work, actor.user_id)
            if announce is not None:
                await presence.announce_online(work, [actor.user_id], announce)
    except Exception as exc:
        if not store_down(exc):
            raise
        log.warning("ws_setup_unavailable", error=type(exc).__name__)
        connection.close(CLOSE_TRY_LATER, "a data store is unavailable; retry shortly")
        await connection.closed.wait()
        return False
    await fanout.follow(connection, room_ids)
    hello = frames.HelloFrame(
        type="hello",
        user_id=actor.user_id,
        connection_id=connection.id,
        heartbeat_s=services.settings.heartbeat_s,
        server_time=datetime.now(UTC),
    )
    first = [hello.model_dump_json()]
    if auth is not None:
        data = authenticated(actor.user_id, connection.expires_at)
        first.append(frames.dumps_ack(auth.id, data))
    fanout.release(connection, first)
    log.info("ws_connected")
    return True
