"""Every WebSocket limit of the contract, each enforced from its setting.

Two instances: `tight` has small limits (4 KiB frames, 5 frames a second, a 1 s auth
timeout, 100-character bodies, one write in flight per socket, one socket set up at a
time); `roomy` has a small
outbox (64 frames) and no practical rate limit, for the slow-reader test, where 50
clients that read and one that never does share a group that receives 2,000 messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.cluster import (
    FRAME_TIMEOUT_S,
    Client,
    Fleet,
    Instance,
    alive,
    log_events,
    metric_total,
    new_group,
    open_unreading,
    rest,
    rss_bytes,
    send_frame,
    unhandled_errors,
)
from tests.support import new_user_id, token_for

MAX_FRAME_BYTES = 4096
FRAMES_PER_S = 5
AUTH_TIMEOUT_S = 1.0
MAX_BODY_CHARS = 100
OUTBOX_FRAMES = 64
FLOOD_STRIKES = 50  # rejected frames tolerated beyond the bucket (app/ws/endpoint.py)

READERS = 50
SENDERS = 4
MESSAGES = 2000
BODY = "m" * 200  # big enough that 2,000 pushes overflow a stuck socket's buffers
RSS_GROWTH_MAX = 300 * 2**20


@pytest.fixture(scope="module")
def instances(fleet: Fleet) -> dict[str, Instance]:
    return fleet.start(
        tight={
            "max_frame_bytes": str(MAX_FRAME_BYTES),
            "frames_per_s": str(FRAMES_PER_S),
            "auth_timeout_s": str(AUTH_TIMEOUT_S),
            "max_body_chars": str(MAX_BODY_CHARS),
            "frames_in_flight": "1",
            "connect_concurrency": "1",
            "connect_queue": "16",
        },
        # Several write lanes here (one is the default), so both are exercised.
        roomy={"outbox_frames": str(OUTBOX_FRAMES), "frames_per_s": "100000", "write_lanes": "4"},
    )


@pytest.fixture(scope="module")
def tight(instances: dict[str, Instance]) -> Iterator[Instance]:
    yield instances["tight"]
    assert unhandled_errors(instances["tight"]) == []


@pytest.fixture(scope="module")
def roomy(instances: dict[str, Instance]) -> Iterator[Instance]:
    yield instances["roomy"]
    assert unhandled_errors(instances["roomy"]) == []


@pytest.fixture
async def opened() -> AsyncIterator[list[ClientConnection]]:
    """Raw connections a test opens; all closed when it ends."""
    sockets: list[ClientConnection] = []
    try:
        yield sockets
    finally:
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()


async def open_raw(
    instance: Instance, opened: list[ClientConnection], token: str | None = None, **kw: Any
) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    ws = await connect(
        instance.ws,
        additional_headers=headers,
        open_timeout=FRAME_TIMEOUT_S,
        proxy=None,
        **kw,
    )
    opened.append(ws)
    return ws


async def open_authed(
    instance: Instance, opened: list[ClientConnection], user_id: str, ttl_s: int = 3600
) -> ClientConnection:
    ws = await open_raw(instance, opened, token_for(user_id, ttl_s=ttl_s))
    assert (await next_frame(ws))["type"] == "hello"
    return ws


async def next_frame(ws: ClientConnection, timeout_s: float = FRAME_TIMEOUT_S) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        frame: dict[str, Any] = orjson.loads(await ws.recv())
        return frame


async def closed_with(ws: ClientConnection, timeout_s: float = FRAME_TIMEOUT_S) -> int:
    """Read (discarding frames) until the server closes; the close code it sent."""
    async with asyncio.timeout(timeout_s):
        with pytest.raises(ConnectionClosed) as closed:
            await read_forever(ws)
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code


async def read_forever(ws: ClientConnection) -> None:
    while True:
        await ws.recv()


def ping(frame_id: str) -> str:
    return orjson.dumps({"type": "ping", "id": frame_id}).decode()


# ---- frame size --------------------------------------------------------------------------


async def test_a_frame_over_max_frame_bytes_closes_with_1009(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_authed(tight, opened, new_user_id())
    prefix = '{"type":"ping","id":"'
    await ws.send(prefix + "x" * (MAX_FRAME_BYTES + 1 - len(prefix) - 2) + '"}')
    assert await closed_with(ws) == 1009


async def test_a_frame_of_exactly_max_frame_bytes_is_read_and_answered(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_authed(tight, opened, new_user_id())
    prefix = '{"type":"ping","x":"'
    frame = prefix + "x" * (MAX_FRAME_BYTES - len(prefix) - 2) + '"}'
    assert len(frame.encode()) == MAX_FRAME_BYTES
    await ws.send(frame)
    error = await next_frame(ws)
    assert (error["type"], error["code"]) == ("error", "VALIDATION_FAILED")
    await ws.send(ping("after"))
    assert await next_frame(ws) == {"type": "pong", "id": "after"}


# ---- connects at once ---------------------------------------------------------------------


async def test_sockets_beyond_connect_concurrency_wait_their_turn_and_all_get_hello(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    users = [new_user_id() for _ in range(12)]
    sockets = await asyncio.gather(*(open_authed(tight, opened, user) for user in users))
    for ws in sockets:
        await ws.send(ping("after"))
        assert await next_frame(ws) == {"type": "pong", "id": "after"}


# ---- writes in flight --------------------------------------------------------------------

PIPELINED_SENDS = 4  # within tight's burst of FRAMES_PER_S


async def send_batches(instance: Instance) -> float:
    """Transactions the instance's write lanes have run so far."""
    async with httpx.AsyncClient(timeout=FRAME_TIMEOUT_S) as http:
        text = (await http.get(f"{instance.http}/metrics")).text
    return metric_total(text, "chat_batch_size_count") or 0.0


async def sends_at_once(instance: Instance, opened: list[ClientConnection]) -> float:
    """Fire PIPELINED_SENDS sends to one room without waiting; check they are answered in
    order with seqs in order, and return how many batches stored them."""
    owner = new_user_id()
    room = await new_group(instance, owner)
    ws = await open_authed(instance, opened, owner)
    before = await send_batches(instance)
    for n in range(PIPELINED_SENDS):
        await ws.send(orjson.dumps({**send_frame(room["id"], f"m{n}"), "id": f"s{n}"}).decode())
    answers = [await next_frame(ws) for _ in range(PIPELINED_SENDS)]
    assert [a["id"] for a in answers] == [f"s{n}" for n in range(PIPELINED_SENDS)], answers
    seqs = [a["data"]["message"]["seq"] for a in answers]
    assert seqs == list(range(1, PIPELINED_SENDS + 1)), answers
    return await send_batches(instance) - before


async def test_sends_in_flight_together_are_stored_together_and_acked_in_order(
    roomy: Instance, opened: list[ClientConnection]
) -> None:
    assert await sends_at_once(roomy, opened) < PIPELINED_SENDS


async def test_with_one_write_in_flight_each_send_waits_for_the_one_before(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    assert await sends_at_once(tight, opened) == PIPELINED_SENDS


async def test_answers_follow_the_order_of_the_frames_whatever_each_one_waits_for(
    roomy: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_authed(roomy, opened, new_user_id())
    stranger_room = str(uuid.uuid4())
    await ws.send(orjson.dumps({**send_frame(stranger_room), "id": "slow"}).decode())
    await ws.send("not json")
    await ws.send(ping("last"))
    answers = [await next_frame(ws) for _ in range(3)]
    assert [(a["type"], a.get("id"), a.get("code")) for a in answers] == [
        ("error", "slow", "ROOM_NOT_FOUND"),
        ("error", None, "INVALID_FRAME"),
        ("pong", "last", None),
    ], answers


# ---- frame rate --------------------------------------------------------------------------


async def burst(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    """Send `count` pings at once; the answers to all of them."""
    for n in range(count):
        await ws.send(ping(f"p{n}"))
    return [await next_frame(ws) for _ in range(count)]


async def test_frames_faster_than_frames_per_s_get_rate_limited_with_retry_after(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_authed(tight, opened, new_user_id())
    answers = await burst(ws, FRAMES_PER_S * 2)
    pongs = [a for a in answers if a["type"] == "pong"]
    limited = [a for a in answers if a["type"] == "error"]
    assert FRAMES_PER_S <= len(pongs) < len(answers), answers
    assert limited, answers
    # Each frame is answered once, under its own id, refused or not.
    assert sorted(a["id"] for a in answers) == sorted(f"p{n}" for n in range(len(answers)))
    for error in limited:
        assert error["code"] == "RATE_LIMITED", error
        assert isinstance(error["retry_after_ms"], int), error
        assert 0 < error["retry_after_ms"] <= 1000 // FRAMES_PER_S + 1, error


async def test_a_rate_limited_connection_is_usable_again_after_retry_after(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_authed(tight, opened, new_user_id())
    answers = await burst(ws, FRAMES_PER_S * 2)
    last = [a for a in answers if a["type"] == "error"][-1]
    assert last["code"] == "RATE_LIMITED", last
    await asyncio.sleep(last["retry_after_ms"] / 1000)
    await ws.send(ping("again"))
    assert await next_frame(ws) == {"type": "pong", "id": "again"}


async def test_flooding_far_beyond_the_rate_closes_with_4429(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_authed(tight, opened, new_user_id())
    with contextlib.suppress(ConnectionClosed):  # the server may close mid-flood
        for n in range((FRAMES_PER_S + FLOOD_STRIKES) * 4):
            await ws.send(ping(f"flood{n}"))
    assert await closed_with(ws) == 4429


# ---- authentication in time, and for no longer than the token --------------------------


async def test_no_auth_frame_within_auth_timeout_closes_with_4408(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    started = time.monotonic()
    ws = await open_raw(tight, opened)
    assert await closed_with(ws, AUTH_TIMEOUT_S + FRAME_TIMEOUT_S) == 4408
    assert AUTH_TIMEOUT_S * 0.9 <= time.monotonic() - started < AUTH_TIMEOUT_S + 3


async def test_a_token_that_expires_while_the_socket_is_open_closes_it_with_4401(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_authed(tight, opened, new_user_id(), ttl_s=2)
    started = time.monotonic()
    assert await closed_with(ws, 2 + FRAME_TIMEOUT_S) == 4401
    assert time.monotonic() - started < 2 + 1.5


async def test_a_fresh_auth_frame_before_expiry_keeps_the_socket_open_past_it(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    user = new_user_id()
    ws = await open_authed(tight, opened, user, ttl_s=2)
    first_expiry = time.monotonic() + 2
    await ws.send(orjson.dumps({"type": "auth", "id": "renew", "token": token_for(user)}).decode())
    ack = await next_frame(ws)
    assert (ack["type"], ack["id"]) == ("ack", "renew"), ack
    expires_at = datetime.fromisoformat(ack["data"]["expires_at"])
    assert (expires_at - datetime.now(expires_at.tzinfo)).total_seconds() > 3000
    await asyncio.sleep(first_expiry + 1.0 - time.monotonic())
    await ws.send(ping("still-here"))
    assert await next_frame(ws) == {"type": "pong", "id": "still-here"}


async def leave_by_closing(ws: ClientConnection) -> None:
    await ws.close()


async def leave_by_vanishing(ws: ClientConnection) -> None:
    ws.transport.abort()


async def leave_by_invalid_utf8(ws: ClientConnection) -> None:
    await ws.send(b'{"type":"auth","token":"\xff"}', text=True)
    assert await closed_with(ws) == 1007


async def leave_by_oversized_frame(ws: ClientConnection) -> None:
    await ws.send("x" * (MAX_FRAME_BYTES + 1))
    assert await closed_with(ws) == 1009


def connection_closes(instance: Instance) -> int:
    return len(log_events(instance, "connection closed"))


@pytest.mark.parametrize(
    "leave",
    [leave_by_closing, leave_by_vanishing, leave_by_invalid_utf8, leave_by_oversized_frame],
    ids=["close", "vanish", "invalid utf-8 (1007)", "oversized frame (1009)"],
)
async def test_a_client_that_leaves_before_authenticating_raises_nothing_unhandled(
    tight: Instance, opened: list[ClientConnection], leave: Callable[[ClientConnection], Any]
) -> None:
    errors, closes = len(unhandled_errors(tight)), connection_closes(tight)
    ws = await open_raw(tight, opened)
    await leave(ws)
    async with asyncio.timeout(FRAME_TIMEOUT_S):  # until the server has seen it go
        while connection_closes(tight) == closes:  # noqa: ASYNC110 (a log file has no event)
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert unhandled_errors(tight)[errors:] == []


async def test_a_renewal_with_a_shorter_lived_token_closes_with_4401_at_its_expiry(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    """The connection lives no longer than its latest token, even a shorter-lived one."""
    user = new_user_id()
    ws = await open_authed(tight, opened, user)
    started = time.monotonic()
    await ws.send(
        orjson.dumps({"type": "auth", "id": "renew", "token": token_for(user, ttl_s=2)}).decode()
    )
    assert (await next_frame(ws))["type"] == "ack"
    assert await closed_with(ws, 2 + FRAME_TIMEOUT_S) == 4401
    assert time.monotonic() - started < 2 + 1.5


async def test_a_renewal_for_another_user_is_refused_and_the_socket_stays_open(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_authed(tight, opened, new_user_id())
    other = token_for(new_user_id())
    await ws.send(orjson.dumps({"type": "auth", "id": "swap", "token": other}).decode())
    error = await next_frame(ws)
    assert (error["type"], error["id"], error["code"]) == ("error", "swap", "UNAUTHORIZED")
    await ws.send(ping("still-mine"))
    assert await next_frame(ws) == {"type": "pong", "id": "still-mine"}


# ---- content -----------------------------------------------------------------------------


async def test_a_body_over_max_body_chars_sent_over_websocket_is_payload_too_large(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    user = new_user_id()
    room = await new_group(tight, user)
    ws = await open_authed(tight, opened, user)
    frame = send_frame(room["id"], "b" * (MAX_BODY_CHARS + 1), id="big")
    await ws.send(orjson.dumps(frame).decode())
    error = await next_frame(ws)
    assert (error["type"], error["id"], error["code"]) == ("error", "big", "PAYLOAD_TOO_LARGE")
    history = await rest(tight, user, "GET", f"/v1/rooms/{room['id']}/messages")
    assert history.json()["items"] == []


# ---- compression -------------------------------------------------------------------------


async def test_per_message_deflate_is_not_negotiated(
    tight: Instance, opened: list[ClientConnection]
) -> None:
    ws = await open_raw(tight, opened, token_for(new_user_id()), compression="deflate")
    assert ws.response is not None
    assert "Sec-WebSocket-Extensions" not in ws.response.headers
    assert ws.protocol.extensions == []
    assert (await next_frame(ws))["type"] == "hello"


# ---- a slow reader -----------------------------------------------------------------------


async def read_messages(client: Client, count: int) -> set[int]:
    """The seqs of the first `count` message pushes."""
    seqs: set[int] = set()
    while len(seqs) < count:
        frame = orjson.loads(await client.ws.recv())
        if frame["type"] == "message":
            seqs.add(frame["message"]["seq"])
    return seqs


async def send_all(sender: Client, room_id: str, count: int, window: int = 10) -> None:
    """Send `count` messages on one socket, at most `window` unacknowledged at a time.

    Sends in flight commit together, so each reader gets up to SENDERS * `window` pushes
    at once: that burst must fit the small outbox, or readers would be closed too."""
    for start in range(0, count, window):
        ids = [await sender.send(send_frame(room_id, BODY)) for _ in range(start, start + window)]
        for frame_id in ids:
            reply = await sender.reply_to(frame_id)
            assert reply["type"] == "ack", reply


def closes_of(instance: Instance, user_id: str) -> list[dict[str, Any]]:
    return [e for e in log_events(instance, "ws_closed") if e.get("user_id") == user_id]


def at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["timestamp"]).timestamp()


@dataclass
class SlowReaderRun:
    """What happened when 2,000 messages went to 50 readers and one stuck client."""

    received: list[set[int]]  # each reader's message seqs
    drain_s: float  # from the last ack to the last reader's last message
    readers_closed: list[dict[str, Any]]
    stuck_overflow: dict[str, Any] | None  # the server's outbox_overflow record for it
    stuck_closed: dict[str, Any] | None  # its ws_closed record
    rss_growth: int


@pytest.fixture(scope="module")
async def slow_reader(roomy: Instance) -> AsyncIterator[SlowReaderRun]:
    senders = [new_user_id("sender") for _ in range(SENDERS)]
    readers = [new_user_id("reader") for _ in range(READERS)]
    stuck = new_user_id("stuck")
    room = await new_group(roomy, *senders, stuck, *readers)
    clients: list[Client] = []
    reading: list[asyncio.Task[set[int]]] = []
    stuck_ws = await open_unreading(roomy, stuck)
    try:
        clients += [await Client.open(roomy.ws, user, proxy=None) for user in senders + readers]
        rss_before = rss_bytes(roomy)
        reading += [asyncio.create_task(read_messages(c, MESSAGES)) for c in clients[SENDERS:]]
        async with asyncio.timeout(60):
            share = MESSAGES // SENDERS
            await asyncio.gather(*(send_all(c, room["id"], share) for c in clients[:SENDERS]))
            sent_at = time.monotonic()
            received = await asyncio.gather(*reading)
            drain_s = time.monotonic() - sent_at
        with contextlib.suppress(TimeoutError):  # its close is logged within 10 s, or never
            async with asyncio.timeout(10):
                while not closes_of(roomy, stuck):  # noqa: ASYNC110 (a log file has no event)
                    await asyncio.sleep(0.1)
        overflows = [e for e in log_events(roomy, "outbox_overflow") if e.get("user_id") == stuck]
        stuck_closes = closes_of(roomy, stuck)
        yield SlowReaderRun(
            received=list(received),
            drain_s=drain_s,
            readers_closed=[e for user in senders + readers for e in closes_of(roomy, user)],
            stuck_overflow=overflows[0] if overflows else None,
            stuck_closed=stuck_closes[0] if stuck_closes else None,
            rss_growth=rss_bytes(roomy) - rss_before,
        )
    finally:
        for task in reading:
            task.cancel()
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()
        stuck_ws.transport.abort()


def test_fifty_readers_each_get_all_2000_messages_beside_a_client_that_never_reads(
    slow_reader: SlowReaderRun,
) -> None:
    assert len(slow_reader.received) == READERS
    assert all(seqs == set(range(1, MESSAGES + 1)) for seqs in slow_reader.received)


def test_the_readers_are_not_held_up_or_cut_off_by_the_client_that_never_reads(
    slow_reader: SlowReaderRun,
) -> None:
    assert slow_reader.drain_s < 10
    assert slow_reader.readers_closed == []


def test_a_client_that_never_reads_is_closed_with_4429_within_10_s_of_falling_behind(
    slow_reader: SlowReaderRun,
) -> None:
    assert slow_reader.stuck_overflow is not None, "it never fell behind: buffers too big?"
    assert slow_reader.stuck_closed is not None, "not closed within 10 s of the last send"
    assert slow_reader.stuck_closed["code"] == 4429, slow_reader.stuck_closed
    behind_s = at(slow_reader.stuck_closed) - at(slow_reader.stuck_overflow)
    assert 0 <= behind_s < 10


def test_memory_stays_bounded_while_a_client_never_reads(
    slow_reader: SlowReaderRun, roomy: Instance
) -> None:
    assert slow_reader.rss_growth < RSS_GROWTH_MAX
    assert alive(roomy)


async def test_a_client_that_falls_behind_then_reads_again_gets_its_frames_then_a_4429_close(
    roomy: Instance,
) -> None:
    """Falling behind ends in a real close (4429, "reconnect and sync") after the frames
    already queued, not a cut connection, for a client that is slow rather than gone."""
    sender, slow = new_user_id("sender"), new_user_id("slow")
    room = await new_group(roomy, sender, slow)
    writer = await Client.open(roomy.ws, sender, proxy=None)
    slow_ws = await open_unreading(roomy, slow)
    try:
        async with asyncio.timeout(30):
            while not [e for e in log_events(roomy, "outbox_overflow") if e["user_id"] == slow]:
                await send_all(writer, room["id"], 20, window=20)
        received: list[str | bytes] = []
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(FRAME_TIMEOUT_S):
                await read_into(slow_ws, received)
    finally:
        await writer.close()
        slow_ws.transport.abort()
    assert closed.value.rcvd is not None, closed.value
    assert closed.value.rcvd.code == 4429
    assert closed.value.rcvd.reason == "not reading fast enough; reconnect and sync"
    assert len(received) >= OUTBOX_FRAMES


async def read_into(ws: ClientConnection, frames: list[str | bytes]) -> None:
    while True:
        frames.append(await ws.recv())
