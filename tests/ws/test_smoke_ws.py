from __future__ import annotations

import uuid

import httpx

from tests.cluster import Client, Instance
from tests.support import auth, new_user_id


async def test_message_sent_on_a_reaches_recipient_on_b(a: Instance, b: Instance) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    async with httpx.AsyncClient() as http:
        room = (
            await http.post(
                f"{a.http}/v1/rooms", json={"name": "x", "member_ids": [bob]}, headers=auth(alice)
            )
        ).json()
    sender = await Client.open(a.ws, alice)
    receiver = await Client.open(b.ws, bob)
    ack = await sender.request(
        {"type": "send", "room_id": room["id"], "client_msg_id": str(uuid.uuid4()), "body": "hi"}
    )
    assert ack["message"]["seq"] == 1
    pushed = await receiver.next_of("message")
    assert pushed["message"]["id"] == ack["message"]["id"]
    await sender.close()
    await receiver.close()
