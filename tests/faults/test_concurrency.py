"""Contention on one room across both instances: many writers at once get one gap-free
sequence, and one client_msg_id sent ten times at once makes one message."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from tests.cluster import Instance
from tests.faults.conftest import (
    ChatClient,
    FaultCluster,
    Outcome,
    close_clients,
    new_group,
    open_clients,
    rest,
    stored_by_client_id,
    stored_messages,
)
from tests.support import new_user_id

WRITERS = 20
REST_WRITERS = 2  # of the WRITERS, one per instance; the rest write over WebSocket
SENDS_EACH = 50
DUPLICATES = 10
TIMEOUT_S = 60.0


async def _rest_send(
    instance: Instance, user: str, room_id: str, client_msg_id: str
) -> dict[str, Any] | str:
    """The stored message, or a description of the failure."""
    payload = {"client_msg_id": client_msg_id, "kind": "text", "body": "x"}
    try:
        resp = await rest(instance, user, "POST", f"/v1/rooms/{room_id}/messages", payload)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}"
    if resp.status_code != 201:
        return f"{resp.status_code} {resp.text}"
    message: dict[str, Any] = resp.json()
    return message


def _ws_result(outcome: Outcome) -> dict[str, Any] | str:
    return outcome.message if outcome.kind == "ack" else f"{outcome.kind} {outcome.frame}"


async def test_twenty_writers_fifty_concurrent_sends_each_get_seq_1_to_1000(
    cluster: FaultCluster,
) -> None:
    users = [new_user_id(f"w{i}") for i in range(WRITERS)]
    room_id = await new_group(cluster.a, users[0], users[1:])
    instances = [cluster.a if i % 2 == 0 else cluster.b for i in range(WRITERS)]
    ws_writers = await open_clients(
        [(instances[i], users[i], [room_id]) for i in range(REST_WRITERS, WRITERS)]
    )
    try:
        started = time.monotonic()
        sends: list[Any] = [
            _rest_send(instances[i], users[i], room_id, str(uuid.uuid4()))
            for i in range(REST_WRITERS)
            for _ in range(SENDS_EACH)
        ]
        sends += [
            client.send_text(room_id, f"{client.user_id} {n}")
            for client in ws_writers
            for n in range(SENDS_EACH)
        ]
        async with asyncio.timeout(TIMEOUT_S):
            answers = await asyncio.gather(*sends)
        took = time.monotonic() - started
    finally:
        await close_clients(ws_writers)
    results = [a if isinstance(a, dict | str) else _ws_result(a) for a in answers]
    failures = [r for r in results if isinstance(r, str)]
    print(f"\n{len(results)} concurrent sends to one room answered in {took:.2f}s")
    assert not failures, failures[:5]
    messages = [r for r in results if isinstance(r, dict)]
    assert sorted(m["seq"] for m in messages) == list(range(1, WRITERS * SENDS_EACH + 1))
    stored = (await stored_messages(cluster.stores, [room_id]))[room_id]
    assert sorted(stored) == list(range(1, WRITERS * SENDS_EACH + 1))
    assert stored == {m["seq"]: m["id"] for m in messages}


async def test_ten_concurrent_sends_of_one_client_msg_id_store_one_message(
    cluster: FaultCluster,
) -> None:
    sender, member_a, member_b = (new_user_id(p) for p in ("dup-s", "dup-ma", "dup-mb"))
    room_id = await new_group(cluster.a, sender, [member_a, member_b])
    clients = await open_clients(
        [
            (cluster.a, sender, [room_id]),
            (cluster.b, sender, [room_id]),
            (cluster.a, member_a, [room_id]),
            (cluster.b, member_b, [room_id]),
        ]
    )
    devices, members = clients[:2], clients[2:]
    client_msg_id = str(uuid.uuid4())
    try:
        rest_sends = [
            _rest_send(instance, sender, room_id, client_msg_id)
            for instance in (cluster.a, cluster.b)
            for _ in range((DUPLICATES - len(devices)) // 2)
        ]

        async def ws_send(device: ChatClient) -> dict[str, Any] | str:
            return _ws_result(await device.send_text(room_id, "x", client_msg_id))

        async with asyncio.timeout(TIMEOUT_S):
            answers = await asyncio.gather(*rest_sends, *(ws_send(d) for d in devices))
        await asyncio.sleep(1.0)  # any second push would have arrived by now
    finally:
        await close_clients(clients)

    assert len(answers) == DUPLICATES
    assert all(isinstance(a, dict) for a in answers), answers
    assert all(a == answers[0] for a in answers), answers
    assert await stored_by_client_id(cluster.stores, sender, client_msg_id) == 1
    assert isinstance(answers[0], dict)
    message_id = answers[0]["id"]
    for member in members:
        pushed = [
            f for f in member.pushes if f["type"] == "message" and f["message"]["id"] == message_id
        ]
        assert len(pushed) == 1, (member.user_id, member.pushes)
        assert pushed[0]["message"] == answers[0]
