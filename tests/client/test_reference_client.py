"""The reference client (`chat_client`) against real instances: delivery across instances,
reconnect + sync after an instance is killed and restarted (no duplicate, no gap), and
token renewal that keeps the connection past the first token's `exp`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from chat_client import (
    ChatClient,
    ChatError,
    ConnectionEvent,
    MessageEvent,
    RoomEvent,
    Sequencer,
    TypingEvent,
)
from tests.cluster import Fleet, Instance
from tests.support import Stores, auth, new_user_id, token_for

WAIT_S = 10.0


@pytest.fixture(scope="module")
def fleet(
    stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Instance]]:
    group = Fleet(stores, tmp_path_factory.mktemp("client"))
    try:
        yield group.start(a={}, b={}, c={})
    finally:
        group.stop()


def provider(user_id: str, ttl_s: int = 3600) -> Callable[[], Any]:
    async def token() -> str:
        return token_for(user_id, ttl_s=ttl_s)

    return token


def client_for(instance: Instance, user_id: str, ttl_s: int = 3600) -> ChatClient:
    return ChatClient(
        instance.ws,
        provider(user_id, ttl_s),
        backoff_base_s=0.1,
        backoff_cap_s=0.5,
        delivered_interval_s=0.05,
        open_timeout_s=5,
    )


class Inbox:
    """Every MessageEvent a client hands out, with a bounded wait for a count."""

    def __init__(self, client: ChatClient) -> None:
        self.events: list[MessageEvent] = []
        self._changed = asyncio.Event()
        client.on(MessageEvent, self._add)

    def _add(self, event: MessageEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, count: int, timeout_s: float = WAIT_S) -> list[MessageEvent]:
        async with asyncio.timeout(timeout_s):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events

    def seqs(self, room_id: str) -> list[int]:
        return [e.seq for e in self.events if e.room_id == room_id]


async def direct_room(instance: Instance, user_id: str, other: str) -> str:
    async with httpx.AsyncClient(base_url=instance.http, timeout=WAIT_S) as http:
        resp = await http.post("/v1/rooms/direct", json={"user_id": other}, headers=auth(user_id))
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


async def delivered_seq(instance: Instance, user_id: str, room_id: str) -> int:
    async with httpx.AsyncClient(base_url=instance.http, timeout=WAIT_S) as http:
        resp = await http.get(f"/v1/rooms/{room_id}", headers=auth(user_id))
    assert resp.status_code == 200, resp.text
    member = next(m for m in resp.json()["members"] if m["user_id"] == user_id)
    return int(member["delivered_seq"])


async def eventually(check: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    """Poll a condition that has no event of its own, bounded by timeout_s."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 (state of another object, no event to wait on)
            await asyncio.sleep(0.02)


async def eventually_async(
    value: Callable[[], Awaitable[int]], at_least: int, timeout_s: float = WAIT_S
) -> None:
    """Poll a server-side number (over REST) until it reaches at_least."""
    async with asyncio.timeout(timeout_s):
        while await value() < at_least:  # noqa: ASYNC110 (a REST value has no event)
            await asyncio.sleep(0.05)


def test_sequencer_orders_dedups_and_asks_for_sync() -> None:
    seq = Sequencer({"r": 2})

    def msg(n: int, room: str = "r") -> dict[str, Any]:
        return {"room_id": room, "seq": n, "sender_id": "x"}

    assert seq.offer(msg(2)).duplicate
    gap = seq.offer(msg(4))
    assert gap.needs_sync
    assert not gap.released
    assert [m["seq"] for m in seq.offer(msg(3)).released] == [3, 4]
    assert seq.offer(msg(4)).duplicate
    # A room new to the client waits for a sync ack to learn where it starts.
    assert seq.offer(msg(8, "new")).needs_sync
    seq.offer(msg(6, "new"))
    seq.offer(msg(7, "new"))
    outcome = seq.after_sync({"r": {"last_seq": 4}, "new": {"last_seq": 7, "has_more": False}})
    assert [m["seq"] for m in outcome.released] == [6, 7, 8]
    assert not outcome.again
    assert seq.cursors() == {"r": 4, "new": 8}


async def test_send_and_receive_across_instances(fleet: dict[str, Instance]) -> None:
    a, b = fleet["a"], fleet["b"]
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await direct_room(a, alice, bob)
    async with client_for(a, alice) as ca, client_for(b, bob) as cb:
        alice_inbox, bob_inbox = Inbox(ca), Inbox(cb)
        typing: list[TypingEvent] = []
        ca.on(TypingEvent, typing.append)
        await asyncio.gather(ca.wait_synced(WAIT_S), cb.wait_synced(WAIT_S))

        first = [await ca.send(room, f"one by one {i}") for i in range(5)]
        assert [m["seq"] for m in first] == [1, 2, 3, 4, 5]
        await asyncio.gather(*(ca.send(room, f"together {i}") for i in range(10)))
        reply = await cb.send(room, "got them")
        assert reply["seq"] == 16

        await bob_inbox.until(16)
        assert bob_inbox.seqs(room) == list(range(1, 17))
        assert [e.own for e in bob_inbox.events] == [False] * 15 + [True]
        await alice_inbox.until(16)
        assert alice_inbox.seqs(room) == list(range(1, 17))
        assert alice_inbox.events[-1].message["body"] == "got them"
        assert cb.stats.duplicates_dropped == 0

        # request(): ack data back, errors raised with their contract code.
        assert await cb.request({"type": "typing", "room_id": room, "active": True}) == {}
        with pytest.raises(ChatError) as refused:
            await cb.request({"type": "send", "room_id": room, "kind": "text"})
        assert refused.value.code == "VALIDATION_FAILED"
        await eventually(lambda: bool(typing))
        assert typing[0].user_id == bob
        assert typing[0].active

        # Coalesced `delivered` frames moved bob's watermark to the last message.
        await eventually_async(lambda: delivered_seq(a, bob, room), 16)


async def test_reconnects_after_restart_and_catches_up(fleet: dict[str, Instance]) -> None:
    a, c = fleet["a"], fleet["c"]
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await direct_room(a, alice, bob)
    async with client_for(a, alice) as ca, client_for(c, bob) as cb:
        inbox, alice_inbox = Inbox(cb), Inbox(ca)
        states: list[ConnectionEvent] = []
        cb.on(ConnectionEvent, states.append)
        await cb.wait_synced(WAIT_S)
        for i in range(5):
            await ca.send(room, f"before {i}")
        await inbox.until(5)

        c.signal(signal.SIGKILL)  # no close frame: the socket just dies
        await asyncio.to_thread(c.proc.wait, WAIT_S)  # type: ignore[union-attr]
        await eventually(lambda: not cb.connected)
        for i in range(10):
            await ca.send(room, f"while down {i}")
        # A send made while disconnected waits, then goes out once (same client_msg_id).
        pending = asyncio.create_task(cb.send(room, "sent while down"))

        await asyncio.to_thread(c.start)
        mine = await asyncio.wait_for(pending, WAIT_S)
        for i in range(5):
            await ca.send(room, f"after {i}")
        await inbox.until(21)
        await cb.wait_synced(WAIT_S)

        assert inbox.seqs(room) == list(range(1, 22)), "a gap or a duplicate"
        assert [e.message["seq"] for e in inbox.events if e.own] == [mine["seq"]]
        assert cb.stats.connects >= 2
        assert cb.stats.syncs >= 2  # the gap was filled by a sync after the reconnect
        assert [s.connected for s in states][:2] == [True, False]
        # Alice sees bob's message exactly once, among her own.
        await alice_inbox.until(21)
        assert alice_inbox.seqs(room) == list(range(1, 22))
        assert [e.seq for e in alice_inbox.events if not e.own] == [mine["seq"]]
        await eventually_async(lambda: delivered_seq(a, bob, room), 21)


async def test_token_renewal_keeps_the_connection(fleet: dict[str, Instance]) -> None:
    a, b = fleet["a"], fleet["b"]
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await direct_room(a, alice, bob)
    async with client_for(a, alice) as ca, client_for(b, bob, ttl_s=3) as cb:
        inbox = Inbox(cb)
        first_connection = cb.connection_id
        await asyncio.sleep(4.5)  # past the first token's exp (3 s at most)
        assert cb.stats.renewals >= 1
        assert cb.connection_id == first_connection
        assert cb.stats.connects == 1
        assert cb.stats.disconnects == 0
        await ca.send(room, "still there?")
        await inbox.until(1)


async def test_room_created_while_connected_is_picked_up(fleet: dict[str, Instance]) -> None:
    a, b = fleet["a"], fleet["b"]
    alice, bob = new_user_id("alice"), new_user_id("bob")
    async with client_for(a, alice) as ca, client_for(b, bob) as cb:
        inbox = Inbox(cb)
        rooms: list[RoomEvent] = []
        cb.on(RoomEvent, rooms.append)
        await asyncio.gather(ca.wait_synced(WAIT_S), cb.wait_synced(WAIT_S))
        async with httpx.AsyncClient(base_url=a.http, timeout=WAIT_S) as http:
            body = {"name": "new", "member_ids": [bob]}
            resp = await http.post("/v1/rooms", json=body, headers=auth(alice))
        assert resp.status_code == 201, resp.text
        room = str(resp.json()["id"])
        for i in range(3):
            await ca.send(room, f"in the new room {i}")
        # A room the client had no cursor for: held, synced, then released in order.
        await inbox.until(3)
        assert inbox.seqs(room) == [1, 2, 3]
        assert cb.cursors[room] == 3
        await eventually(lambda: any(r.room_id == room for r in rooms))
