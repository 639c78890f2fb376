"""Fan-out across two instances: who gets a `message`, `message.updated` and `room` push."""

from __future__ import annotations

import asyncio
import uuid

from tests.cluster import (
    Client,
    Instance,
    Sockets,
    drain_all,
    new_group,
    next_messages,
    of_type,
    rest,
    rest_send,
    send_frame,
)
from tests.support import new_user_id

QUIET_S = 0.5


async def test_a_message_sent_on_a_reaches_the_recipient_on_b_and_the_senders_other_device(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    sending = await sockets.open(a, alice)
    other_device = await sockets.open(b, alice)
    receiver = await sockets.open(b, bob)

    ack = await sending.request(send_frame(room["id"], "hello bob"))

    for client in (receiver, other_device):
        pushed = await client.next_of("message")
        assert pushed["message"] == ack["message"]
        assert "id" not in pushed  # pushes carry no frame id
    at_sender, at_receiver = await drain_all(sending, receiver, quiet_s=QUIET_S)
    assert of_type(at_sender, "message") == []
    assert of_type(at_receiver, "message") == []  # exactly once


async def test_acks_carry_the_stored_message_with_consecutive_seqs(
    a: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    sender = await sockets.open(a, alice)

    frames = [send_frame(room["id"], f"m{i}") for i in range(3)]
    acks = [await sender.request(frame) for frame in frames]

    assert [ack["message"]["seq"] for ack in acks] == [1, 2, 3]
    for frame, ack in zip(frames, acks, strict=True):
        message = ack["message"]
        assert message["room_id"] == room["id"]
        assert message["sender_id"] == alice
        assert message["body"] == frame["body"]
        assert message["client_msg_id"] == frame["client_msg_id"]
        assert message["kind"] == "text"
        assert message["deleted"] is False
        assert message["edited_at"] is None
        assert message["created_at"].endswith("Z")
        uuid.UUID(message["id"])
    history = (await rest(a, bob, "GET", f"/v1/rooms/{room['id']}/messages")).json()
    assert history["items"] == [ack["message"] for ack in acks]


async def test_a_resend_with_the_same_client_msg_id_returns_the_first_message_and_pushes_nothing(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    sender = await sockets.open(a, alice)
    receiver = await sockets.open(b, bob)
    frame = send_frame(room["id"], "once")

    first = await sender.request(dict(frame))
    await receiver.next_of("message")
    again = await sender.request(dict(frame))

    assert again["message"] == first["message"]
    assert of_type(await receiver.drain(QUIET_S), "message") == []
    second = await sender.request(send_frame(room["id"], "next"))
    assert second["message"]["seq"] == 2  # the resend consumed no seq


async def test_every_group_member_gets_each_message_it_did_not_send_once_in_seq_order(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    users = [new_user_id("g") for _ in range(3)]
    room = await new_group(a, users[0], *users[1:])
    clients = {
        users[0]: await sockets.open(a, users[0]),
        users[1]: await sockets.open(b, users[1]),
        users[2]: await sockets.open(a, users[2]),
    }

    sent: dict[str, list[int]] = {user: [] for user in users}
    for i in range(20):
        sender = users[i % 3]
        ack = await clients[sender].request(send_frame(room["id"], f"n{i}"))
        sent[sender].append(ack["message"]["seq"])

    assert sorted(seq for seqs in sent.values() for seq in seqs) == list(range(1, 21))
    for user, client in clients.items():
        expected = sorted(seq for other, seqs in sent.items() if other != user for seq in seqs)
        received = [m["seq"] for m in await next_messages(client, len(expected))]
        assert received == expected, user
    for later in await drain_all(*clients.values(), quiet_s=QUIET_S):
        assert of_type(later, "message") == []


async def test_concurrent_senders_on_both_instances_reach_every_other_member_exactly_once(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    users = [new_user_id("c") for _ in range(3)]
    room = await new_group(b, users[0], *users[1:])
    clients = [
        await sockets.open(a, users[0]),
        await sockets.open(b, users[1]),
        await sockets.open(b, users[2]),
    ]

    async def burst(client: Client) -> list[int]:
        return [
            (await client.request(send_frame(room["id"], f"x{i}")))["message"]["seq"]
            for i in range(7)
        ]

    sent = await asyncio.gather(*(burst(c) for c in clients))

    assert sorted(seq for seqs in sent for seq in seqs) == list(range(1, 22))
    for index, client in enumerate(clients):
        expected = sorted(seq for i, seqs in enumerate(sent) if i != index for seq in seqs)
        got = [m["seq"] for m in await next_messages(client, len(expected))]
        assert sorted(got) == expected
    for later in await drain_all(*clients, quiet_s=QUIET_S):
        assert of_type(later, "message") == []


async def test_a_rest_send_pushes_the_message_to_every_socket_of_every_member(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    alice_socket = await sockets.open(b, alice)
    bob_socket = await sockets.open(b, bob)

    message = await rest_send(a, alice, room["id"], "over rest")

    for client in (bob_socket, alice_socket):  # REST has no sending connection to skip
        pushed = await client.next_of("message")
        assert pushed["message"] == message


async def test_a_rest_edit_pushes_message_updated_with_the_new_body(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)
    sent = (await alice_socket.request(send_frame(room["id"], "typo")))["message"]
    await bob_socket.next_of("message")

    resp = await rest(
        a, alice, "PATCH", f"/v1/rooms/{room['id']}/messages/{sent['id']}", {"body": "fixed"}
    )
    assert resp.status_code == 200, resp.text

    for client in (bob_socket, alice_socket):
        updated = (await client.next_of("message.updated"))["message"]
        assert updated["id"] == sent["id"]
        assert updated["seq"] == sent["seq"]
        assert updated["body"] == "fixed"
        assert updated["edited_at"].endswith("Z")
        assert updated["deleted"] is False
    assert of_type(await bob_socket.drain(QUIET_S), "message") == []  # not a new message


async def test_a_rest_delete_pushes_message_updated_as_a_tombstone(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    bob_socket = await sockets.open(b, bob)
    sent = await rest_send(a, alice, room["id"], "regret")
    await bob_socket.next_of("message")

    resp = await rest(a, alice, "DELETE", f"/v1/rooms/{room['id']}/messages/{sent['id']}")
    assert resp.status_code == 200, resp.text

    tombstone = (await bob_socket.next_of("message.updated"))["message"]
    assert tombstone["id"] == sent["id"]
    assert tombstone["deleted"] is True
    assert tombstone["body"] is None
    assert tombstone["attachment"] is None


async def test_creating_a_group_pushes_room_created_to_the_members_open_sockets(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    owner, member, outsider = new_user_id("own"), new_user_id("mem"), new_user_id("out")
    owner_socket = await sockets.open(b, owner)
    member_socket = await sockets.open(b, member)
    outsider_socket = await sockets.open(b, outsider)

    room = await new_group(a, owner, member, name="launch")

    for client in (owner_socket, member_socket):
        event = await client.next_of("room", event="created")
        assert event["room_id"] == room["id"]
        assert event["room"]["name"] == "launch"
        assert {m["user_id"] for m in event["room"]["members"]} == {owner, member}
    at_member, at_outsider = await drain_all(member_socket, outsider_socket, quiet_s=QUIET_S)
    assert of_type(at_member, "room") == []  # once
    assert of_type(at_outsider, "room") == []


async def test_a_socket_open_before_a_group_was_created_receives_its_messages(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    owner, member = new_user_id("own"), new_user_id("mem")
    member_socket = await sockets.open(b, member)
    room = await new_group(a, owner, member)
    await member_socket.next_of("room", event="created")

    sent = await rest_send(a, owner, room["id"], "first")

    assert (await member_socket.next_of("message"))["message"] == sent


async def test_renaming_a_group_pushes_room_updated_to_its_members(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    owner, member = new_user_id("own"), new_user_id("mem")
    room = await new_group(a, owner, member, name="before")
    owner_socket = await sockets.open(a, owner)
    member_socket = await sockets.open(b, member)

    resp = await rest(a, owner, "PATCH", f"/v1/rooms/{room['id']}", {"name": "after"})
    assert resp.status_code == 200, resp.text

    for client in (member_socket, owner_socket):
        event = await client.next_of("room", event="updated")
        assert event["room_id"] == room["id"]
        assert event["room"]["name"] == "after"
    assert of_type(await member_socket.drain(QUIET_S), "room") == []
