"""A connection lives no longer than its token, unless the client renewed it in time: a
renewal sent before `exp` counts even while it still waits behind a slower frame."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jose import jwt
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.auth.tokens import issue
from tests.cluster import FRAME_TIMEOUT_S, Client, Instance, new_group, rest_send
from tests.support import new_user_id, token_for, until_blocked_by

# Short, so the tests wait little; long enough to set up on a loaded machine.
TTL_S = 4
# The slow frame starts this long before `exp` and is held until this long past it: in all
# well within its statement time-out (3 s), and time enough to queue a renewal before `exp`.
STARTED_BEFORE_EXPIRY_S = 1.0
HELD_PAST_EXPIRY_S = 0.5


@dataclass
class Expiring:
    """A socket on a token about to expire, in a room with a message to acknowledge."""

    client: Client
    user_id: str
    room_id: str
    expires_at: float  # the token's `exp`, Unix time


@asynccontextmanager
async def expiring_socket(instance: Instance) -> AsyncIterator[Expiring]:
    user, other = new_user_id("renewing"), new_user_id("other")
    room_id = (await new_group(instance, user, other))["id"]
    await rest_send(instance, other, room_id, "to acknowledge")
    token = token_for(user, ttl_s=TTL_S)
    expires_at = float(jwt.get_unverified_claims(token)["exp"])
    headers = {"Authorization": f"Bearer {token}"}
    async with connect(instance.ws, additional_headers=headers, open_timeout=FRAME_TIMEOUT_S) as ws:
        client = Client(ws)
        await client.next_of("hello")
        yield Expiring(client, user, room_id, expires_at)


@asynccontextmanager
async def slow_frame_past_expiry(db: Any, socket: Expiring) -> AsyncIterator[None]:
    """A `sync` frame of the socket kept waiting until its token has expired: its cursor
    moves the member's delivered watermark, whose row `db` holds locked meanwhile. Frames
    sent in the block queue behind it, and are taken by the server before `exp`."""
    await asyncio.sleep(max(0.0, socket.expires_at - time.time() - STARTED_BEFORE_EXPIRY_S))
    async with db.transaction():
        await db.execute(
            "SELECT 1 FROM members WHERE room_id = $1 AND user_id = $2 FOR UPDATE",
            uuid.UUID(socket.room_id),
            socket.user_id,
        )
        await socket.client.send({"type": "sync", "cursors": {socket.room_id: 1}})
        await until_blocked_by(db, FRAME_TIMEOUT_S)
        yield
        assert time.time() < socket.expires_at - 0.2, "set up too slowly to send before exp"
        await asyncio.sleep(socket.expires_at - time.time() + HELD_PAST_EXPIRY_S)


async def close_code(client: Client) -> int:
    """The code the server closes with; fails if a frame arrives instead."""
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            await client.ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_a_renewal_sent_before_expiry_but_queued_behind_a_slow_frame_keeps_the_connection(
    a: Instance, db: Any
) -> None:
    async with expiring_socket(a) as socket:
        client = socket.client
        async with slow_frame_past_expiry(db, socket):
            renewal_id = await client.send({"type": "auth", "token": token_for(socket.user_id)})
        renewal = await client.reply_to(renewal_id)
        await client.drain(0.3)  # longer than a re-check: a close would come by now
        pong = await client.next_of("pong", id=await client.send({"type": "ping"}))

    assert renewal["type"] == "ack", renewal
    expires_at = datetime.fromisoformat(renewal["data"]["expires_at"])
    assert expires_at > datetime.now(UTC) + timedelta(minutes=50)
    assert pong["type"] == "pong"


def another_users_token(user_id: str) -> str:
    return token_for(new_user_id("another"))


def a_forged_token(user_id: str) -> str:
    return issue("another-secret-that-is-also-long-enough!!", user_id)


@pytest.mark.parametrize("bad_token", [another_users_token, a_forged_token])
async def test_a_renewal_with_a_bad_token_queued_at_expiry_ends_in_a_4401_close(
    a: Instance, db: Any, bad_token: Callable[[str], str]
) -> None:
    async with expiring_socket(a) as socket:
        client = socket.client
        async with slow_frame_past_expiry(db, socket):
            renewal_id = await client.send({"type": "auth", "token": bad_token(socket.user_id)})
        renewal = await client.reply_to(renewal_id)
        code = await close_code(client)

    assert (renewal["type"], renewal["code"]) == ("error", "UNAUTHORIZED")
    assert code == 4401
