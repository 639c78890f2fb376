"""Redis killed with -9 for 2 s while two instances carry 1,000 messages among 20 clients
in 5 rooms: nothing acknowledged is lost, every client converges by `sync`, sends keep
committing during the outage, and /readyz tells the truth throughout.

One scenario (the fixture) runs the outage once and records what happened; each test
checks one behaviour of that record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.cluster import Instance
from tests.faults.conftest import (
    ChatClient,
    FaultCluster,
    Outcome,
    close_clients,
    new_group,
    open_clients,
    readyz,
    stored_client_ids,
    stored_messages,
)
from tests.support import new_user_id

USERS = 20
ROOMS = 5
SENDERS = 10
MESSAGES = 1000
PER_SENDER = MESSAGES // SENDERS
# Sends are spread over ~5 s so the outage falls in the middle of the traffic.
PACE_S = 0.05
KILL_AFTER_S = 2.0
OUTAGE_S = 2.0
# The contract under test: converged within this long of Redis answering again.
CONVERGE_S = 5.0
# How long the scenario waits at most (longer than the bound, so a miss is measured).
OBSERVE_S = 15.0
# /readyz is watched until this long after Redis' return: long enough for several probes
# past the 2 s an instance is given to be ready again, on a machine the rest of the suite
# keeps busy (at 3 s, a window of about one second, this test failed in two full runs).
READY_SEEN_S = 5.0


@dataclass
class Outage:
    killed_at: float
    back_at: float
    traffic_end: float  # every send answered by then
    clients: list[ChatClient]
    sends: list[tuple[str, Outcome]]  # (sender user id, outcome)
    stored: dict[str, dict[int, str]]  # room -> seq -> id, read from PostgreSQL
    stored_client_ids: set[str]
    # Since Redis answered again, or since the last send was answered if that came later;
    # None: not within OBSERVE_S.
    converged_after_s: float | None
    readyz: list[tuple[float, str, int, dict[str, Any]]] = field(default_factory=list)

    def acked(self) -> list[Outcome]:
        return [o for _, o in self.sends if o.kind == "ack"]


def _rooms_of(user_index: int) -> list[int]:
    return [user_index % ROOMS, (user_index + 1) % ROOMS]


async def _sender(client: ChatClient, room_ids: list[str], started: float) -> list[Outcome]:
    """PER_SENDER sends on a fixed schedule, pipelined (each one's answer awaited, bounded,
    without holding up the next), alternating between the sender's two rooms."""
    sends = []
    for i in range(PER_SENDER):
        if (wait := started + i * PACE_S - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        sends.append(asyncio.create_task(_send_when_online(client, room_ids[i % 2], f"m{i}")))
    return list(await asyncio.gather(*sends))


async def _send_when_online(client: ChatClient, room_id: str, body: str) -> Outcome:
    """A real app queues a send while it is reconnecting; bounded like any wait here."""
    with contextlib.suppress(TimeoutError):
        await client.wait_online(10)
    return await client.send_text(room_id, body)


async def _watch_readyz(
    instances: list[Instance], started: float, stop: asyncio.Event
) -> list[tuple[float, str, int, dict[str, Any]]]:
    seen: list[tuple[float, str, int, dict[str, Any]]] = []
    while not stop.is_set():
        results = await asyncio.gather(*(readyz(i, 3.0) for i in instances))
        for instance, (status, body) in zip(instances, results, strict=True):
            seen.append((time.monotonic() - started, instance.name, status, body))
        await asyncio.sleep(0.2)
    return seen


def _converged(clients: list[ChatClient], stored: dict[str, dict[int, str]]) -> bool:
    return all(view == stored[room] for c in clients for room, view in c.view().items())


@pytest.fixture(scope="module")
async def outage(fault_cluster: FaultCluster) -> AsyncIterator[Outage]:
    cluster = fault_cluster
    await cluster.heal()
    users = [new_user_id(f"r{i}") for i in range(USERS)]
    members: list[list[str]] = [[] for _ in range(ROOMS)]
    for index, user in enumerate(users):
        for room in _rooms_of(index):
            members[room].append(user)
    room_ids = [await new_group(cluster.a, m[0], m[1:]) for m in members]
    specs = [
        (
            cluster.a if index % 2 == 0 else cluster.b,
            user,
            [room_ids[r] for r in _rooms_of(index)],
        )
        for index, user in enumerate(users)
    ]
    clients = await open_clients(specs)
    background: list[asyncio.Task[Any]] = []
    try:
        started = time.monotonic()
        senders = [
            asyncio.create_task(_sender(c, list(c.held), started)) for c in clients[:SENDERS]
        ]
        background += senders
        await asyncio.sleep(KILL_AFTER_S)
        stop_watch = asyncio.Event()
        watcher = asyncio.create_task(_watch_readyz([cluster.a, cluster.b], started, stop_watch))
        background.append(watcher)

        cluster.kill_redis()
        killed_at = time.monotonic()
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(cluster.start_redis)
        back_at = time.monotonic()

        async with asyncio.timeout(60):
            results = await asyncio.gather(*senders)
        traffic_end = time.monotonic()
        sends = [
            (client.user_id, outcome)
            for client, outcomes in zip(clients, results, strict=False)
            for outcome in outcomes
        ]
        stored = await stored_messages(cluster.stores, room_ids)
        stored_ids = await stored_client_ids(cluster.stores, room_ids)
        converged_after_s: float | None = None
        # Clients can only hold what has been sent: when the traffic outlasts the return of
        # Redis, the clock starts at the last answer instead.
        settled_at = max(back_at, traffic_end)
        while time.monotonic() - settled_at < OBSERVE_S:
            if _converged(clients, stored):
                converged_after_s = time.monotonic() - settled_at
                break
            await asyncio.sleep(0.05)
        # /readyz a little past the return too, to see it come back.
        await asyncio.sleep(max(0.0, back_at + READY_SEEN_S - time.monotonic()))
        stop_watch.set()
        async with asyncio.timeout(10):
            seen = await watcher
        record = Outage(
            killed_at=killed_at - started,
            back_at=back_at - started,
            traffic_end=traffic_end - started,
            clients=clients,
            sends=[(u, _shift(o, started)) for u, o in sends],
            stored=stored,
            stored_client_ids=stored_ids,
            converged_after_s=converged_after_s,
            readyz=seen,
        )
        _report(record)
        yield record
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await close_clients(clients)
        await cluster.heal()


def _shift(outcome: Outcome, origin: float) -> Outcome:
    """Times relative to the start of the traffic."""
    return Outcome(
        outcome.kind,
        outcome.sent_at - origin,
        outcome.answered_at - origin,
        outcome.frame,
        outcome.client_msg_id,
    )


def _since_last_answer(o: Outage) -> str:
    if o.converged_after_s is None:
        return "-"
    return f"{max(o.back_at, o.traffic_end) + o.converged_after_s - o.traffic_end:.2f}"


def _report(o: Outage) -> None:
    kinds: dict[str, int] = {}
    for _, s in o.sends:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
    during = [s for _, s in o.sends if o.killed_at <= s.sent_at <= o.back_at]
    worst = max((s.latency_s for _, s in o.sends), default=0.0)
    print(
        f"\nredis outage: killed at {o.killed_at:.2f}s, back at {o.back_at:.2f}s, "
        f"every send answered by {o.traffic_end:.2f}s; "
        f"sends {kinds}; sent during outage {len(during)} "
        f"(max latency {max((s.latency_s for s in during), default=0):.2f}s); "
        f"worst ack latency {worst:.2f}s; converged {o.converged_after_s}s after return "
        f"({_since_last_answer(o)}s after the last answer); "
        f"resyncs {sum(len(c.resyncs) for c in o.clients)}, "
        f"syncs {sum(c.syncs for c in o.clients)}, "
        f"reconnects {sum(c.reconnects for c in o.clients)}, "
        f"duplicates dropped {sum(c.duplicates for c in o.clients)}"
    )


def test_every_client_holds_every_acknowledged_message_once_in_order_within_5s(
    outage: Outage,
) -> None:
    assert outage.converged_after_s is not None, {
        c.user_id: {r: sorted(set(outage.stored[r]) - set(v)) for r, v in c.view().items()}
        for c in outage.clients
    }
    assert outage.converged_after_s <= CONVERGE_S, outage.converged_after_s
    acked = {(o.message["room_id"], o.message["seq"], o.message["id"]) for o in outage.acked()}
    for client in outage.clients:
        assert not client.conflicts, client.conflicts
        for room_id, view in client.view().items():
            # Held once per seq, gap-free from 1, each seq the message PostgreSQL has.
            assert sorted(view) == list(range(1, len(view) + 1))
            assert view == outage.stored[room_id]
            mine = {(r, s, i) for r, s, i in acked if r == room_id}
            assert mine <= {(room_id, s, i) for s, i in view.items()}


def test_every_send_is_acknowledged_or_refused_cleanly(outage: Outage) -> None:
    assert len(outage.sends) == MESSAGES
    silent = [(u, o) for u, o in outage.sends if o.kind == "timeout"]
    assert not silent, silent[:5]
    for _, o in outage.sends:
        assert o.kind in ("ack", "error", "closed"), o
        if o.kind == "error":  # refused: with a code, and nothing stored
            assert o.code, o
            assert o.client_msg_id not in outage.stored_client_ids, o


def test_every_acknowledged_message_is_in_postgresql(outage: Outage) -> None:
    acked = outage.acked()
    assert acked
    for o in acked:
        m = o.message
        assert outage.stored[m["room_id"]].get(m["seq"]) == m["id"], m


def test_sends_commit_during_redis_outage(outage: Outage) -> None:
    during = [o for o in outage.acked() if outage.killed_at <= o.answered_at <= outage.back_at]
    assert len(during) >= SENDERS, len(during)
    for o in during:
        assert outage.stored[o.message["room_id"]][o.message["seq"]] == o.message["id"]


def test_readyz_reports_redis_down_during_outage_and_ready_after(outage: Outage) -> None:
    for name in ("a", "b"):
        seen = [(t, status, body) for t, n, status, body in outage.readyz if n == name]
        down = [
            (status, body)
            for t, status, body in seen
            if outage.killed_at + 0.5 <= t <= outage.back_at
        ]
        assert down, seen
        for status, body in down:
            assert status == 503, (status, body)
            assert body["redis"] is False, body
            assert body["postgres"] is True, body
        after = [(t, status, body) for t, status, body in seen if t >= outage.back_at + 2.0]
        assert after, seen
        # Ready again, and still at the end. (A probe in between may time out on this busy
        # 2-core machine while the clients' catch-up runs; it has a 2 s bound of its own.)
        assert after[-1][1] == 200, (outage.back_at, after)
        assert sum(status == 200 for _, status, _ in after) >= len(after) / 2, after
