"""`sync`: catch-up from PostgreSQL after a gap, on any instance, bounded per room."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from tests.cluster import (
    Client,
    Fleet,
    Instance,
    Sockets,
    new_group,
    of_type,
    open_unreading,
    rest,
    rest_send,
    send_frame,
    send_history,
)
from tests.support import Stores, new_user_id

# An instance whose outbox holds far fewer frames than one sync replays, and with no
# practical rate limit, so the history is sent quickly.
OUTBOX_FRAMES = 16
HISTORY = 200
SEND_WINDOW = 20  # sends awaiting their ack at once, while the history is written
# Big enough that the replay outgrows the kernel's and the transport's buffers, so what
# the client has not read yet has to wait in the outbox.
BODY = "s" * 3000
# How long the client leaves the replay unread before it starts reading.
READ_LATE_S = 1.0
REPLAY_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def small_outbox(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    fleet = Fleet(stores, tmp_path_factory.mktemp("sync-small-outbox"))
    try:
        settings = {"outbox_frames": str(OUTBOX_FRAMES), "frames_per_s": "100000"}
        yield fleet.start(small_outbox=settings)["small_outbox"]
    finally:
        fleet.stop()


async def sync(
    client: Client, cursors: dict[str, int], **fields: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The frames that arrived before the sync's ack, and the ack's data."""
    frame_id = await client.send({"type": "sync", "cursors": cursors, **fields})
    reply = await client.reply_to(frame_id)
    assert reply["type"] == "ack", reply
    before, client.frames = client.frames, []
    data: dict[str, Any] = reply["data"]
    return before, data


async def delivered_seq(instance: Instance, viewer: str, room_id: str, member: str) -> int:
    room = (await rest(instance, viewer, "GET", f"/v1/rooms/{room_id}")).json()
    (row,) = [m for m in room["members"] if m["user_id"] == member]
    seq: int = row["delivered_seq"]
    return seq


async def test_a_client_back_on_the_other_instance_gets_exactly_what_it_missed_before_the_ack(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    bob_on_b = await sockets.open(b, bob)
    for body in ("seen 1", "seen 2"):
        await rest_send(a, alice, room["id"], body)
    last_seen = max([(await bob_on_b.next_of("message"))["message"]["seq"] for _ in range(2)])
    await bob_on_b.close()
    missed = [await rest_send(a, alice, room["id"], f"missed {i}") for i in range(5)]

    bob_on_a = await sockets.open(a, bob)
    before, data = await sync(bob_on_a, {room["id"]: last_seen})

    assert [f["message"] for f in of_type(before, "message")] == missed
    assert [f["message"]["seq"] for f in before] == [3, 4, 5, 6, 7]  # nothing else
    assert data["rooms"] == {room["id"]: {"last_seq": 7, "has_more": False}}


async def test_a_sync_cursor_moves_the_members_delivered_seq_to_it_and_no_further(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await send_history(a, alice, room["id"], 7, "m")
    bob_socket = await sockets.open(b, bob)

    replayed, _ = await sync(bob_socket, {room["id"]: 2})
    assert len(of_type(replayed, "message")) == 5
    # Replayed frames are not yet delivered: only the cursor acknowledges.
    assert await delivered_seq(a, alice, room["id"], bob) == 2

    last = max(f["message"]["seq"] for f in replayed)
    again, data = await sync(bob_socket, {room["id"]: last})
    assert of_type(again, "message") == []
    assert data["rooms"][room["id"]] == {"last_seq": 7, "has_more": False}
    assert await delivered_seq(a, alice, room["id"], bob) == 7


async def test_a_cursor_below_the_delivered_seq_replays_but_does_not_move_it_back(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await send_history(a, alice, room["id"], 4, "m")
    bob_socket = await sockets.open(b, bob)
    await bob_socket.request({"type": "delivered", "room_id": room["id"], "seq": 4})

    replayed, _ = await sync(bob_socket, {room["id"]: 1})

    assert [f["message"]["seq"] for f in of_type(replayed, "message")] == [2, 3, 4]
    assert await delivered_seq(a, alice, room["id"], bob) == 4


async def test_rooms_left_out_of_the_cursors_replay_from_the_members_delivered_seq(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    left_out = await new_group(a, alice, bob, name="left out")
    named = await new_group(a, alice, bob, name="named")
    await send_history(a, alice, left_out["id"], 5, "l")
    await send_history(a, alice, named["id"], 3, "n")
    bob_socket = await sockets.open(b, bob)
    await bob_socket.request({"type": "delivered", "room_id": left_out["id"], "seq": 3})

    replayed, data = await sync(bob_socket, {named["id"]: 2})

    by_room: dict[str, list[int]] = {}
    for frame in of_type(replayed, "message"):
        by_room.setdefault(frame["message"]["room_id"], []).append(frame["message"]["seq"])
    assert by_room == {left_out["id"]: [4, 5], named["id"]: [3]}
    assert data["rooms"] == {
        left_out["id"]: {"last_seq": 5, "has_more": False},
        named["id"]: {"last_seq": 3, "has_more": False},
    }


async def test_an_empty_sync_from_a_new_member_replays_the_whole_room(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await send_history(a, alice, room["id"], 3, "m")
    bob_socket = await sockets.open(b, bob)

    replayed, data = await sync(bob_socket, {})

    assert [f["message"]["seq"] for f in of_type(replayed, "message")] == [1, 2, 3]
    assert data["rooms"][room["id"]] == {"last_seq": 3, "has_more": False}


async def test_limit_bounds_each_room_and_has_more_says_there_is_more(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    first = await new_group(a, alice, bob, name="first")
    second = await new_group(a, alice, bob, name="second")
    await send_history(a, alice, first["id"], 5, "f")
    await send_history(a, alice, second["id"], 3, "s")
    bob_socket = await sockets.open(b, bob)
    cursors = {first["id"]: 0, second["id"]: 0}

    pages: list[dict[str, list[int]]] = []
    for _ in range(3):
        replayed, data = await sync(bob_socket, cursors, limit=2)
        page: dict[str, list[int]] = {}
        for frame in of_type(replayed, "message"):
            page.setdefault(frame["message"]["room_id"], []).append(frame["message"]["seq"])
        pages.append(page)
        if page == {} or not any(r["has_more"] for r in data["rooms"].values()):
            assert data["rooms"] == {
                first["id"]: {"last_seq": 5, "has_more": False},
                second["id"]: {"last_seq": 3, "has_more": False},
            }
            break
        assert data["rooms"][first["id"]]["has_more"] is True
        for room_id, seqs in page.items():
            cursors[room_id] = seqs[-1]

    assert pages[0] == {first["id"]: [1, 2], second["id"]: [1, 2]}
    assert pages[1] == {first["id"]: [3, 4], second["id"]: [3]}
    assert pages[2] == {first["id"]: [5]}


async def test_sync_replays_a_deleted_message_as_a_tombstone(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    sent = await rest_send(a, alice, room["id"], "secret")
    resp = await rest(a, alice, "DELETE", f"/v1/rooms/{room['id']}/messages/{sent['id']}")
    assert resp.status_code == 200, resp.text
    bob_socket = await sockets.open(b, bob)

    replayed, _ = await sync(bob_socket, {room["id"]: 0})

    (frame,) = of_type(replayed, "message")
    assert frame["message"]["deleted"] is True
    assert frame["message"]["body"] is None


async def test_a_sync_cursor_for_a_room_the_caller_is_not_in_reveals_nothing(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob, eve = new_user_id("alice"), new_user_id("bob"), new_user_id("eve")
    room = await new_group(a, alice, bob)
    await rest_send(a, alice, room["id"], "private")
    eve_socket = await sockets.open(b, eve)

    replayed, data = await sync(eve_socket, {room["id"]: 0})

    assert of_type(replayed, "message") == []
    assert room["id"] not in data["rooms"]


async def test_a_sync_bigger_than_the_outbox_reaches_a_client_that_reads_late_whole_and_open(
    small_outbox: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(small_outbox, alice, bob)
    sender = await sockets.open(small_outbox, alice, proxy=None)
    for _ in range(0, HISTORY, SEND_WINDOW):
        ids = [await sender.send(send_frame(room["id"], BODY)) for _ in range(SEND_WINDOW)]
        for frame_id in ids:
            assert (await sender.reply_to(frame_id))["type"] == "ack"
    slow = await open_unreading(small_outbox, bob)
    received: list[dict[str, Any]] = []
    closed: ConnectionClosed | None = None
    try:
        assert orjson.loads(await slow.recv())["type"] == "hello"
        sync_frame = {"type": "sync", "id": "s", "cursors": {room["id"]: 0}, "limit": HISTORY}
        await slow.send(orjson.dumps(sync_frame).decode())
        await asyncio.sleep(READ_LATE_S)  # the replay piles up behind the unread socket
        async with asyncio.timeout(REPLAY_TIMEOUT_S):
            while not received or received[-1].get("id") != "s":
                received.append(orjson.loads(await slow.recv()))
            await slow.send(orjson.dumps({"type": "ping", "id": "p"}).decode())
            received.append(orjson.loads(await slow.recv()))
    except ConnectionClosed as exc:
        closed = exc
    finally:
        slow.transport.abort()

    assert closed is None, f"closed after {len(received)} frames: {closed}"
    *replayed, ack, pong = received
    assert [f["message"]["seq"] for f in of_type(replayed, "message")] == list(
        range(1, HISTORY + 1)
    )
    assert len(replayed) == HISTORY  # nothing else, nothing twice
    assert ack["type"] == "ack"
    assert ack["data"]["rooms"][room["id"]] == {"last_seq": HISTORY, "has_more": False}
    assert pong == {"type": "pong", "id": "p"}
