"""Membership changes reach open connections at once, on every instance."""

from __future__ import annotations

from tests.cluster import (
    Instance,
    Sockets,
    drain_all,
    new_group,
    of_type,
    rest,
    rest_send,
    send_frame,
)
from tests.support import new_user_id

QUIET_S = 0.5


async def test_a_removed_members_connection_on_the_other_instance_is_told_and_hears_no_more(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    owner, bob, carol = new_user_id("own"), new_user_id("bob"), new_user_id("carol")
    room = await new_group(a, owner, bob, carol)
    bob_socket = await sockets.open(b, bob)
    carol_socket = await sockets.open(b, carol)  # keeps B subscribed to the room

    resp = await rest(a, owner, "DELETE", f"/v1/rooms/{room['id']}/members/{bob}")
    assert resp.status_code == 204, resp.text

    event = await bob_socket.next_of("room", event="member_removed")
    assert (event["room_id"], event["user_id"]) == (room["id"], bob)
    await rest_send(a, owner, room["id"], "after bob left")
    await carol_socket.next_of("message")  # the room is still live for the others
    later = await bob_socket.drain(QUIET_S)
    assert of_type(later, "message") == []
    assert of_type(later, "room") == []  # member_removed came exactly once


async def test_the_remaining_members_see_the_removal_with_a_snapshot_without_the_member(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    owner, bob, carol = new_user_id("own"), new_user_id("bob"), new_user_id("carol")
    room = await new_group(a, owner, bob, carol)
    carol_socket = await sockets.open(b, carol)

    resp = await rest(a, owner, "DELETE", f"/v1/rooms/{room['id']}/members/{bob}")
    assert resp.status_code == 204, resp.text

    event = await carol_socket.next_of("room", event="member_removed")
    assert event["user_id"] == bob
    assert {m["user_id"] for m in event["room"]["members"]} == {owner, carol}


async def test_a_removed_member_can_no_longer_send_or_type_in_the_room(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    owner, bob = new_user_id("own"), new_user_id("bob")
    room = await new_group(a, owner, bob)
    bob_socket = await sockets.open(b, bob)
    owner_socket = await sockets.open(a, owner)
    resp = await rest(a, owner, "DELETE", f"/v1/rooms/{room['id']}/members/{bob}")
    assert resp.status_code == 204, resp.text
    await bob_socket.next_of("room", event="member_removed")

    send = await bob_socket.reply_to(await bob_socket.send(send_frame(room["id"], "still here?")))
    typing = await bob_socket.reply_to(
        await bob_socket.send({"type": "typing", "room_id": room["id"], "active": True})
    )

    assert (send["type"], send["code"]) == ("error", "ROOM_NOT_FOUND")
    assert (typing["type"], typing["code"]) == ("error", "ROOM_NOT_FOUND")
    pushed = await owner_socket.drain(QUIET_S)
    assert of_type(pushed, "message") == []
    assert of_type(pushed, "typing") == []


async def test_an_added_members_open_connection_is_told_once_and_gets_the_next_message(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    owner, carol, dave = new_user_id("own"), new_user_id("carol"), new_user_id("dave")
    room = await new_group(a, owner, carol)
    carol_socket = await sockets.open(b, carol)  # B already follows the room
    dave_socket = await sockets.open(b, dave)

    resp = await rest(a, owner, "POST", f"/v1/rooms/{room['id']}/members", {"user_id": dave})
    assert resp.status_code == 201, resp.text

    event = await dave_socket.next_of("room", event="member_added")
    assert (event["room_id"], event["user_id"]) == (room["id"], dave)
    assert dave in {m["user_id"] for m in event["room"]["members"]}
    told = await carol_socket.next_of("room", event="member_added")
    assert told["user_id"] == dave
    sent = await rest_send(a, owner, room["id"], "welcome dave")
    assert (await dave_socket.next_of("message"))["message"] == sent
    at_dave, at_carol = await drain_all(dave_socket, carol_socket, quiet_s=QUIET_S)
    assert of_type(at_dave, "room") == []  # told exactly once
    assert of_type(at_carol, "room") == []


async def test_an_added_member_on_the_instance_that_added_them_is_told_once(
    a: Instance, sockets: Sockets
) -> None:
    owner, dave = new_user_id("own"), new_user_id("dave")
    room = await new_group(a, owner)
    owner_socket = await sockets.open(a, owner)
    dave_socket = await sockets.open(a, dave)

    resp = await rest(a, owner, "POST", f"/v1/rooms/{room['id']}/members", {"user_id": dave})
    assert resp.status_code == 201, resp.text

    await dave_socket.next_of("room", event="member_added")
    await owner_socket.next_of("room", event="member_added")
    assert of_type(await dave_socket.drain(QUIET_S), "room") == []
    ack = await owner_socket.request(send_frame(room["id"], "hi dave"))
    assert (await dave_socket.next_of("message"))["message"] == ack["message"]


async def test_a_member_who_leaves_stops_receiving_on_all_their_devices(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    owner, bob = new_user_id("own"), new_user_id("bob")
    room = await new_group(a, owner, bob)
    bob_on_a = await sockets.open(a, bob)
    bob_on_b = await sockets.open(b, bob)
    owner_socket = await sockets.open(b, owner)

    resp = await rest(b, bob, "DELETE", f"/v1/rooms/{room['id']}/members/{bob}")
    assert resp.status_code == 204, resp.text
    for client in (bob_on_a, bob_on_b):
        await client.next_of("room", event="member_removed")
    await owner_socket.next_of("room", event="member_removed")

    await owner_socket.request(send_frame(room["id"], "bye"))

    for later in await drain_all(bob_on_a, bob_on_b, quiet_s=QUIET_S):
        assert of_type(later, "message") == []
