"""SIGTERM: sockets close with 1001, set up or not, and every acknowledged message is in
PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.cluster import FRAME_TIMEOUT_S, Client, Instance
from tests.support import Stores, auth, new_user_id

pytestmark = pytest.mark.timeout(120)


async def test_sigterm_closes_sockets_with_1001_and_loses_nothing_acknowledged(
    stores: Stores, tmp_path: Path
) -> None:
    doomed = Instance("doomed", stores, tmp_path)
    survivor = Instance("survivor", stores, tmp_path)
    doomed.start()
    survivor.start()
    try:
        alice, bob = new_user_id("alice"), new_user_id("bob")
        async with httpx.AsyncClient() as http:
            room = (
                await http.post(
                    f"{survivor.http}/v1/rooms",
                    json={"name": "t", "member_ids": [bob]},
                    headers=auth(alice),
                )
            ).json()
        sender = await Client.open(doomed.ws, alice)
        acked: list[int] = []

        async def keep_sending() -> None:
            while True:
                frame = {
                    "type": "send",
                    "room_id": room["id"],
                    "client_msg_id": str(uuid.uuid4()),
                    "body": "x",
                }
                reply = await sender.reply_to(await sender.send(frame))
                if reply["type"] == "ack":
                    acked.append(reply["data"]["message"]["seq"])
                elif reply.get("code") == "RATE_LIMITED":  # as a client should: wait
                    await asyncio.sleep(reply["retry_after_ms"] / 1000)

        sending = asyncio.create_task(keep_sending())
        await asyncio.sleep(0.5)
        doomed.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(sending, 15)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert acked, "some sends were acknowledged before the shutdown"
        assert doomed.proc is not None
        assert doomed.proc.wait(20) in (0, -signal.SIGTERM)

        reader = await Client.open(survivor.ws, bob)
        data = await reader.request({"type": "sync", "cursors": {room["id"]: 0}, "limit": 500})
        replayed = [f["message"]["seq"] for f in reader.frames if f["type"] == "message"]
        assert set(acked) <= set(replayed), "every acknowledged message survived"
        assert replayed == list(range(1, data["rooms"][room["id"]]["last_seq"] + 1))
        await reader.close()
    finally:
        doomed.stop()
        survivor.stop()


async def test_a_socket_still_waiting_for_its_auth_frame_is_closed_with_1001(
    stores: Stores, tmp_path: Path
) -> None:
    doomed = Instance("doomed-at-auth", stores, tmp_path)
    doomed.start()
    try:
        # A browser-style client: no header, so the server waits for its `auth` frame,
        # inside the endpoint's task (the handshake is done once `connect` returns).
        ws = await connect(doomed.ws, open_timeout=FRAME_TIMEOUT_S)
        doomed.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(FRAME_TIMEOUT_S):
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert doomed.proc is not None
        assert doomed.proc.wait(20) in (0, -signal.SIGTERM)
    finally:
        doomed.stop()
