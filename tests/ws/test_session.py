"""A socket after its endpoint has returned: the session serves it by callbacks."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import connect

from tests.cluster import FRAME_TIMEOUT_S, Client, Instance
from tests.support import new_user_id, token_for

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
