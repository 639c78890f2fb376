"""`delivered` / `read` frames: forward-only, clamped watermarks and who hears of a move."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx

from tests.cluster import (
    FRAME_TIMEOUT_S,
    Client,
    Instance,
    Sockets,
    drain_all,
    new_group,
    next_receipt,
    of_type,
    parse_time,
    rest,
    rest_send,
    send_history,
)
from tests.support import auth, new_user_id, until_blocked_by

QUIET_S = 0.5
# Far longer than a frame takes to reach PostgreSQL, and short of the instances' lock
# timeout (3 s), which would fail the held move instead of letting it wait.
WAITING_WITHIN_S = 2.0
# A display name of the reader's only on the REST read, so that the request writes it.
WEB_NAME = "on the web"


def mark(kind: str, room_id: str, seq: int) -> dict[str, Any]:
    return {"type": kind, "room_id": room_id, "seq": seq}


async def receipts_of(
    instance: Instance, viewer: str, room_id: str, message_id: str
) -> dict[str, dict[str, Any]]:
    resp = await rest(
        instance, viewer, "GET", f"/v1/rooms/{room_id}/messages/{message_id}/receipts"
    )
    assert resp.status_code == 200, resp.text
    return {item["user_id"]: item for item in resp.json()["items"]}


@asynccontextmanager
async def member_row_held(db: Any, room_id: str, user_id: str) -> AsyncIterator[None]:
    """A member's row locked until the block ends: a move of their watermarks, asked for
    meanwhile, waits in PostgreSQL as it would behind another instance's batch."""
    async with db.transaction():
        await db.execute(
            "SELECT 1 FROM members WHERE room_id = $1 AND user_id = $2 FOR UPDATE",
            uuid.UUID(room_id),
            user_id,
        )
        yield


@asynccontextmanager
async def lane_held(
    db: Any, room_id: str, holder: str, holder_socket: Client
) -> AsyncIterator[None]:
    """The watermark lane of `holder_socket`'s instance busy until the block ends: a move
    of the holder's own (which tells no one else: they sent what it passes) waits for
    their member row, and whatever is marked meanwhile queues behind it, to be written
    in one batch once the block ends."""
    async with member_row_held(db, room_id, holder):
        await holder_socket.send(mark("delivered", room_id, 1))
        await until_blocked_by(db, WAITING_WITHIN_S)
        yield


async def until_taken(socket: Client, room_id: str, watcher: Client) -> None:
    """Until the instance has taken every frame `socket` sent so far. Frames are taken in
    order and a mark is handed to its lane as it is taken, but its ack waits for its batch,
    and so would a pong (answers keep the frames' order): a typing frame's push to another
    member, which waits for no answer, shows that those before it were taken."""
    await socket.send({"type": "typing", "room_id": room_id, "active": True})
    await watcher.next_of("typing", room_id=room_id)


async def read_over_rest(
    instance: Instance, user_id: str, room_id: str, seq: int
) -> httpx.Response:
    """`POST /read` under `WEB_NAME`: the request writes the new name before its mark."""
    async with httpx.AsyncClient(base_url=instance.http, timeout=FRAME_TIMEOUT_S) as http:
        return await http.post(
            f"/v1/rooms/{room_id}/read", json={"seq": seq}, headers=auth(user_id, WEB_NAME)
        )


async def until_signed_in_as(db: Any, user_id: str, name: str) -> None:
    """Until a request's sign-in under `name` has committed. From there to its mark the
    request waits on no store and no lock, so the mark is queued long before what the test
    does next (a round trip through the instance) comes back; the batch count each test
    checks afterwards confirms it."""
    async with asyncio.timeout(WAITING_WITHIN_S):
        while await db.fetchval("SELECT name FROM users WHERE id = $1", user_id) != name:  # noqa: ASYNC110 (a commit has no event)
            await asyncio.sleep(0.01)


async def watermark_batches(instance: Instance) -> tuple[float, float]:
    """How many watermark batches an instance has written, and how many marks they held."""
    async with httpx.AsyncClient(timeout=FRAME_TIMEOUT_S) as http:
        lines = (await http.get(f"{instance.http}/metrics")).text.splitlines()
    samples = {}
    for field in ("count", "sum"):
        prefix = f'chat_batch_size_{field}{{lane="watermarks"}} '
        samples[field] = sum(float(x.removeprefix(prefix)) for x in lines if x.startswith(prefix))
    return samples["count"], samples["sum"]


async def test_a_delivered_frame_pushes_a_receipt_to_the_sender_on_the_other_instance(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    first = await rest_send(a, alice, room["id"], "one")
    second = await rest_send(a, alice, room["id"], "two")
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)

    ack = await bob_socket.request(mark("delivered", room["id"], 1))

    assert ack == {"room_id": room["id"], "delivered_seq": 1, "read_seq": 0}
    receipt = await alice_socket.next_of("receipt")
    assert receipt["room_id"] == room["id"]
    assert receipt["user_id"] == bob
    assert receipt["kind"] == "delivered"
    assert receipt["seq"] == 1
    assert receipt["at"].endswith("Z")
    view = await receipts_of(a, alice, room["id"], first["id"])
    assert view[bob]["delivered_at"] is not None
    assert view[bob]["read_at"] is None
    unreached = await receipts_of(a, alice, room["id"], second["id"])
    assert unreached[bob] == {"user_id": bob, "delivered_at": None, "read_at": None}


async def test_a_read_frame_pushes_a_read_receipt_to_the_sender_and_shows_read_at(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    sent = await rest_send(a, alice, room["id"], "one")
    alice_socket = await sockets.open(b, alice)
    bob_socket = await sockets.open(a, bob)
    await bob_socket.request(mark("delivered", room["id"], 1))
    await next_receipt(alice_socket, "delivered")

    ack = await bob_socket.request(mark("read", room["id"], 1))

    assert ack == {"room_id": room["id"], "delivered_seq": 1, "read_seq": 1}
    receipt = await alice_socket.next_of("receipt")
    assert (receipt["kind"], receipt["seq"], receipt["user_id"]) == ("read", 1, bob)
    assert receipt["at"].endswith("Z")
    view = await receipts_of(b, alice, room["id"], sent["id"])
    assert view[bob]["delivered_at"] is not None
    assert view[bob]["read_at"] is not None
    assert view[bob]["read_at"].endswith("Z")
    delivered_at = datetime.fromisoformat(view[bob]["delivered_at"])
    assert delivered_at <= datetime.fromisoformat(view[bob]["read_at"])


async def test_reading_ahead_of_delivery_also_reports_delivered(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await rest_send(a, alice, room["id"], "one")
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)

    ack = await bob_socket.request(mark("read", room["id"], 1))

    assert ack["delivered_seq"] == 1  # read implies delivered
    kinds = {(await alice_socket.next_of("receipt"))["kind"] for _ in range(2)}
    assert kinds == {"delivered", "read"}


async def test_the_readers_other_device_gets_the_receipt_but_the_reading_socket_only_its_ack(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await rest_send(a, alice, room["id"], "one")
    reading = await sockets.open(b, bob)
    other_device = await sockets.open(a, bob)
    await reading.request(mark("delivered", room["id"], 1))
    await next_receipt(other_device, "delivered")

    await reading.request(mark("read", room["id"], 1))

    receipt = await next_receipt(other_device, "read")
    assert (receipt["user_id"], receipt["seq"]) == (bob, 1)
    assert of_type(await reading.drain(QUIET_S), "receipt") == []


async def test_watermarks_never_move_back_and_a_stale_read_pushes_nothing(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await send_history(a, alice, room["id"], 3, "m")
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)

    assert (await bob_socket.request(mark("read", room["id"], 3)))["read_seq"] == 3
    await next_receipt(alice_socket, "read", seq=3)
    await alice_socket.drain(QUIET_S)
    stale = await bob_socket.request(mark("read", room["id"], 1))
    stale_delivered = await bob_socket.request(mark("delivered", room["id"], 2))

    assert stale == {"room_id": room["id"], "delivered_seq": 3, "read_seq": 3}
    assert stale_delivered == stale
    assert of_type(await alice_socket.drain(QUIET_S), "receipt") == []
    summary = (await rest(b, bob, "GET", "/v1/rooms")).json()["items"]
    (mine,) = [r for r in summary if r["id"] == room["id"]]
    assert (mine["read_seq"], mine["delivered_seq"], mine["unread"]) == (3, 3, 0)


async def test_a_read_beyond_the_last_seq_is_clamped_to_it(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await send_history(a, alice, room["id"], 2, "m")
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)

    ack = await bob_socket.request(mark("read", room["id"], 1000))

    assert ack == {"room_id": room["id"], "delivered_seq": 2, "read_seq": 2}
    assert (await next_receipt(alice_socket, "read"))["seq"] == 2
    # The next message is unread: the clamp left no credit for future messages.
    await rest_send(a, alice, room["id"], "later")
    summary = (await rest(b, bob, "GET", "/v1/rooms")).json()["items"]
    (mine,) = [r for r in summary if r["id"] == room["id"]]
    assert (mine["read_seq"], mine["unread"]) == (2, 1)


async def test_a_member_who_sent_nothing_in_the_passed_range_gets_no_receipt(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob, carol = new_user_id("alice"), new_user_id("bob"), new_user_id("carol")
    room = await new_group(a, alice, bob, carol)
    await rest_send(a, alice, room["id"], "a1")
    await rest_send(a, alice, room["id"], "a2")
    await rest_send(a, carol, room["id"], "c3")
    alice_socket = await sockets.open(a, alice)
    carol_socket = await sockets.open(b, carol)
    bob_socket = await sockets.open(b, bob)

    await bob_socket.request(mark("delivered", room["id"], 2))

    assert (await alice_socket.next_of("receipt"))["seq"] == 2
    assert of_type(await carol_socket.drain(QUIET_S), "receipt") == []

    await bob_socket.request(mark("delivered", room["id"], 3))

    carols = await carol_socket.next_of("receipt")
    assert (carols["user_id"], carols["kind"], carols["seq"]) == (bob, "delivered", 3)
    assert of_type(await alice_socket.drain(QUIET_S), "receipt") == []


async def test_a_sync_cursor_reports_delivery_to_the_sender(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await send_history(a, alice, room["id"], 2, "m")
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)

    await bob_socket.request({"type": "sync", "cursors": {room["id"]: 2}})

    receipt = await alice_socket.next_of("receipt")
    assert (receipt["user_id"], receipt["kind"], receipt["seq"]) == (bob, "delivered", 2)


async def test_marking_a_room_the_caller_is_not_in_is_room_not_found(
    a: Instance, sockets: Sockets
) -> None:
    alice, bob, eve = new_user_id("alice"), new_user_id("bob"), new_user_id("eve")
    room = await new_group(a, alice, bob)
    await rest_send(a, alice, room["id"], "private")
    eve_socket = await sockets.open(a, eve)

    frame_id = await eve_socket.send(mark("read", room["id"], 1))
    reply = await eve_socket.reply_to(frame_id)

    assert reply["type"] == "error"
    assert reply["code"] == "ROOM_NOT_FOUND"


async def test_a_read_receipt_carries_the_time_its_move_was_written_not_asked_for(
    a: Instance, b: Instance, sockets: Sockets, db: Any
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    sent = await rest_send(a, alice, room["id"], "one")
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)
    await bob_socket.request(mark("delivered", room["id"], 1))
    await next_receipt(alice_socket, "delivered")

    async with member_row_held(db, room["id"], bob):
        frame_id = await bob_socket.send(mark("read", room["id"], 1))
        await until_blocked_by(db, WAITING_WITHIN_S)
        released = await db.fetchval("SELECT clock_timestamp()")
    assert (await bob_socket.reply_to(frame_id))["type"] == "ack"

    pushed = parse_time((await next_receipt(alice_socket, "read"))["at"])
    view = (await receipts_of(a, alice, room["id"], sent["id"]))[bob]
    assert pushed > released
    assert pushed == parse_time(view["read_at"])
    assert parse_time(view["delivered_at"]) <= pushed


async def test_a_sync_acknowledgement_carries_the_time_its_move_was_written_not_asked_for(
    a: Instance, b: Instance, sockets: Sockets, db: Any
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    sent = await rest_send(a, alice, room["id"], "one")
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)

    async with member_row_held(db, room["id"], bob):
        frame_id = await bob_socket.send({"type": "sync", "cursors": {room["id"]: 1}})
        await until_blocked_by(db, WAITING_WITHIN_S)
        released = await db.fetchval("SELECT clock_timestamp()")
    assert (await bob_socket.reply_to(frame_id))["type"] == "ack"

    pushed = parse_time((await next_receipt(alice_socket, "delivered"))["at"])
    view = (await receipts_of(a, alice, room["id"], sent["id"]))[bob]
    assert pushed > released
    assert pushed == parse_time(view["delivered_at"])


async def test_reading_ahead_of_delivery_stamps_both_receipts_with_one_time(
    a: Instance, b: Instance, sockets: Sockets
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    sent = await rest_send(a, alice, room["id"], "one")
    alice_socket = await sockets.open(a, alice)
    bob_socket = await sockets.open(b, bob)

    await bob_socket.request(mark("read", room["id"], 1))

    delivered = await next_receipt(alice_socket, "delivered")
    read = await next_receipt(alice_socket, "read")
    view = (await receipts_of(a, alice, room["id"], sent["id"]))[bob]
    assert parse_time(delivered["at"]) == parse_time(read["at"])
    assert parse_time(view["delivered_at"]) == parse_time(view["read_at"])


# Marks of one reader queued behind a held lane are written as one batch, and one move.
# Its receipt goes to every connection of the reader but those whose own frame asked for
# the whole of it (each has its ack): never a socket's own move back to it, never a move
# hidden from a socket that asked for less, or for nothing.


async def test_a_read_frame_sharing_a_batch_with_a_rest_read_gets_its_ack_and_no_receipt(
    a: Instance, b: Instance, sockets: Sockets, db: Any
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await rest_send(a, alice, room["id"], "one")
    alice_socket = await sockets.open(a, alice)
    reading = await sockets.open(a, bob)
    other_device = await sockets.open(b, bob)
    batches, marks = await watermark_batches(a)

    async with lane_held(db, room["id"], alice, alice_socket):
        over_rest = asyncio.create_task(read_over_rest(a, bob, room["id"], 1))
        await until_signed_in_as(db, bob, WEB_NAME)
        frame_id = await reading.send(mark("read", room["id"], 1))
        await until_taken(reading, room["id"], alice_socket)

    moved = {"room_id": room["id"], "delivered_seq": 1, "read_seq": 1}
    assert (await reading.reply_to(frame_id))["data"] == moved
    response = await asyncio.wait_for(over_rest, FRAME_TIMEOUT_S)
    assert (response.status_code, response.json()) == (200, moved)
    # The holder's batch, then one with both reads.
    assert await watermark_batches(a) == (batches + 2, marks + 3)
    for kind in ("delivered", "read"):
        receipt = await next_receipt(other_device, kind)
        assert (receipt["user_id"], receipt["seq"]) == (bob, 1)
    assert (await next_receipt(alice_socket, "read", user_id=bob))["seq"] == 1
    assert of_type(await reading.drain(QUIET_S), "receipt") == []


async def test_two_sockets_reading_in_one_batch_get_their_acks_and_no_receipt(
    a: Instance, b: Instance, sockets: Sockets, db: Any
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await rest_send(a, alice, room["id"], "one")
    alice_socket = await sockets.open(a, alice)
    reading = await sockets.open(a, bob)
    also_reading = await sockets.open(a, bob)
    other_device = await sockets.open(b, bob)
    batches, marks = await watermark_batches(a)

    async with lane_held(db, room["id"], alice, alice_socket):
        frame_ids = []
        for socket in (reading, also_reading):
            frame_ids.append(await socket.send(mark("read", room["id"], 1)))
            await until_taken(socket, room["id"], alice_socket)

    moved = {"room_id": room["id"], "delivered_seq": 1, "read_seq": 1}
    for socket, frame_id in zip((reading, also_reading), frame_ids, strict=True):
        assert (await socket.reply_to(frame_id))["data"] == moved
    assert await watermark_batches(a) == (batches + 2, marks + 3)
    assert (await next_receipt(other_device, "read"))["seq"] == 1
    assert (await next_receipt(alice_socket, "read", user_id=bob))["seq"] == 1
    for frames in await drain_all(reading, also_reading, quiet_s=QUIET_S):
        assert of_type(frames, "receipt") == []


async def test_a_socket_that_read_less_than_a_batchs_move_gets_a_receipt_for_the_rest(
    a: Instance, b: Instance, sockets: Sockets, db: Any
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await new_group(a, alice, bob)
    await send_history(a, alice, room["id"], 2, "m")
    alice_socket = await sockets.open(a, alice)
    read_one = await sockets.open(a, bob)
    read_two = await sockets.open(a, bob)
    other_device = await sockets.open(b, bob)
    batches, marks = await watermark_batches(a)

    async with lane_held(db, room["id"], alice, alice_socket):
        for socket, seq in ((read_one, 1), (read_two, 2)):
            await socket.send(mark("read", room["id"], seq))
            await until_taken(socket, room["id"], alice_socket)

    assert await watermark_batches(a) == (batches + 2, marks + 3)
    # The move to 2 was asked for by `read_two` alone: `read_one` asked only for 1.
    for socket in (read_one, other_device):
        for kind in ("delivered", "read"):
            receipt = await next_receipt(socket, kind)
            assert (receipt["user_id"], receipt["seq"]) == (bob, 2)
    assert (await next_receipt(alice_socket, "read", user_id=bob))["seq"] == 2
    assert of_type(await read_two.drain(QUIET_S), "receipt") == []
