"""A socket after its endpoint has returned: the session serves it by callbacks."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import connect

from tests.cluster import (
    FRAME_TIMEOUT_S,
    Client,
    Instance,
    Sockets,
    new_group,
    next_receipt,
    rest,
    rest_send,
)
from tests.support import new_user_id, token_for, until_blocked_by

# uvicorn's close timeout (10 s) plus the protocol's grace for a lingering close (2 s):
# the moment a socket whose app task had ended used to be cut off.
CUT_OFF_AFTER_S = 12.0


async def test_an_idle_socket_is_served_past_the_close_timeout(a: Instance) -> None:
    client = await Client.open(a.ws, new_user_id("idle"))
    await asyncio.sleep(CUT_OFF_AFTER_S + 1.5)
    frame_id = await client.send({"type": "ping"})
    pong = await client.next_of("pong", id=frame_id)
    assert pong == {"type": "pong", "id": frame_id}
    await client.ws.close()


async def test_frames_sent_before_the_hello_are_answered_in_order(a: Instance) -> None:
    headers = {"Authorization": f"Bearer {token_for(new_user_id('eager'))}"}
    async with connect(a.ws, additional_headers=headers, open_timeout=FRAME_TIMEOUT_S) as ws:
        # Sent as soon as the handshake is done, while the server still sets the socket up.
        for n in range(5):
            await ws.send(orjson.dumps({"type": "ping", "id": f"p{n}"}).decode())
        received: list[dict[str, Any]] = []
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            while len(received) < 6:
                received.append(orjson.loads(await ws.recv()))
    assert received[0]["type"] == "hello"
    assert [f["id"] for f in received[1:]] == [f"p{n}" for n in range(5)]


async def test_an_empty_text_frame_sent_before_the_hello_is_answered_as_text(a: Instance) -> None:
    headers = {"Authorization": f"Bearer {token_for(new_user_id('empty'))}"}
    async with connect(a.ws, additional_headers=headers, open_timeout=FRAME_TIMEOUT_S) as ws:
        await ws.send("")
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            hello = orjson.loads(await ws.recv())
            error = orjson.loads(await ws.recv())
    assert hello["type"] == "hello"
    assert error["code"] == "INVALID_FRAME"
    assert error["message"] == "frame is not valid JSON"


async def test_a_push_that_arrives_while_the_socket_is_set_up_comes_after_the_hello(
    a: Instance, db: Any, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await rest_send(a, bob, room["id"], "read me")
    # Bob's other device: it gets each push to bob in the same delivery as the new socket.
    other_device = await sockets.open(a, bob)
    # A new display name makes the set-up write bob's row, after the socket has been
    # registered for bob's pushes: with the row locked, the set-up waits right there.
    held = db.transaction()
    await held.start()
    await db.execute("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", bob)
    headers = {"Authorization": f"Bearer {token_for(bob, name='Bob')}"}
    async with connect(a.ws, additional_headers=headers, open_timeout=FRAME_TIMEOUT_S) as ws:
        try:
            await until_blocked_by(db, FRAME_TIMEOUT_S)
            resp = await rest(a, alice, "POST", f"/v1/rooms/{room['id']}/read", {"seq": 1})
            assert resp.status_code == 200, resp.text
            await next_receipt(other_device, "read", user_id=alice)
        finally:
            await held.rollback()
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            first = orjson.loads(await ws.recv())
        receipt = await next_receipt(Client(ws), "read", user_id=alice)
    assert first["type"] == "hello"
    assert receipt["seq"] == 1
