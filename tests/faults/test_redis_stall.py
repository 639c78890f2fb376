"""A stalled Redis link (a black hole between an instance and Redis: no FIN, no RST, no
answer) for about three heartbeats: the instance notices by its in-band pings, reconnects
once the link passes again, and tells its clients to `sync`, which replays what the other
instance's users sent meanwhile.

Runs on a pair of its own with a 1 s heartbeat: `dark` (whose link stalls) and `lit`.

The stall runs once (the `stall` fixture) and each test checks one behaviour of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.cluster import Instance
from tests.faults.conftest import (
    SHORT_HEARTBEAT_S,
    ChatClient,
    FaultCluster,
    close_clients,
    log_lines,
    new_group,
    open_clients,
    stored_messages,
    wait_until,
)
from tests.support import new_user_id

HEARTBEAT_S = SHORT_HEARTBEAT_S
STALL_S = 3.5 * HEARTBEAT_S
SEND_EVERY_S = 0.25
# The contract under test: a stall is found within 3 heartbeats; once the link passes,
# the instance is back (and its clients told) within this long.
DETECT_WITHIN_S = 3 * HEARTBEAT_S
BACK_WITHIN_S = 3.0
RECOVER_WITHIN_S = 5.0
OBSERVE_S = 10.0


@dataclass
class Stall:
    stalled_at: float  # every time below: seconds since the link went dark
    passed_at: float
    detected_after_s: float | None  # first `bus_disconnected` of `dark` since the stall
    resubscribed_after_s: float | None  # first `bus_resubscribed` since the link passed
    resubscribed_in_dark: int  # `bus_resubscribed` logged while the link was still dark
    sent: list[tuple[int, str]]  # (seq, id) of what lit's user sent during the stall
    held_before_pass: list[dict[int, str]]  # what dark's clients held as the link passed
    resyncs: list[list[float]]  # per client of `dark`, since the link passed (< 0: before)
    recovered_after_s: float | None  # dark's clients hold all of it, since the link passed
    stored: dict[int, str] = field(default_factory=dict)
    clients: list[ChatClient] = field(default_factory=list)


async def _first_log_after(
    instance: Instance, event: str, known: int, since: float
) -> float | None:
    """Seconds from `since` until the instance logs `event` beyond the `known` first ones."""
    found = await wait_until(lambda: len(log_lines(instance, event)) > known, OBSERVE_S)
    return None if found is None else time.monotonic() - since


@pytest.fixture(scope="module")
async def stall(fault_cluster: FaultCluster) -> AsyncIterator[Stall]:
    cluster = fault_cluster
    await cluster.heal()
    clients: list[ChatClient] = []
    try:
        dark = await asyncio.to_thread(cluster.launch, "dark", heartbeat_s=str(HEARTBEAT_S))
        lit = await asyncio.to_thread(cluster.launch, "lit", heartbeat_s=str(HEARTBEAT_S))
        link = cluster.redis_proxies[dark.name]
        users = [new_user_id("st-d1"), new_user_id("st-d2"), new_user_id("st-l")]
        room_id = await new_group(lit, users[2], users[:2])
        clients = await open_clients(
            [(dark, users[0], [room_id]), (dark, users[1], [room_id]), (lit, users[2], [room_id])]
        )
        on_dark, sender = clients[:2], clients[2]
        first = await sender.send_text(room_id, "before")
        assert first.kind == "ack", first
        # The live path works before the stall.
        assert await wait_until(lambda: all(1 in c.held[room_id] for c in on_dark), 5) is not None
        disconnects = len(log_lines(dark, "bus_disconnected"))
        resubscribes = len(log_lines(dark, "bus_resubscribed"))
        resyncs_before = [len(c.resyncs) for c in on_dark]

        await asyncio.to_thread(link.blackhole)
        stalled = time.monotonic()
        detect = asyncio.create_task(
            _first_log_after(dark, "bus_disconnected", disconnects, stalled)
        )
        sent = []
        while time.monotonic() - stalled < STALL_S:
            outcome = await sender.send_text(room_id, "during")
            assert outcome.kind == "ack", outcome
            sent.append((outcome.message["seq"], outcome.message["id"]))
            await asyncio.sleep(SEND_EVERY_S)
        held_before = [dict(c.view()[room_id]) for c in on_dark]
        resubscribed_in_dark = len(log_lines(dark, "bus_resubscribed")) - resubscribes

        await asyncio.to_thread(link.pass_through)
        passed = time.monotonic()
        resubscribing = asyncio.create_task(
            _first_log_after(dark, "bus_resubscribed", resubscribes, passed)
        )
        wanted = dict(sent)
        complete = await wait_until(
            lambda: all(wanted.items() <= c.view()[room_id].items() for c in on_dark), OBSERVE_S
        )
        recovered_after = None if complete is None else time.monotonic() - passed
        async with asyncio.timeout(OBSERVE_S):
            resubscribed_after = await resubscribing
        async with asyncio.timeout(OBSERVE_S):
            detected_after = await detect
        record = Stall(
            stalled_at=0.0,
            passed_at=passed - stalled,
            detected_after_s=detected_after,
            resubscribed_after_s=resubscribed_after,
            resubscribed_in_dark=resubscribed_in_dark,
            sent=sent,
            held_before_pass=held_before,
            resyncs=[
                [t - passed for t in c.resyncs[count:]]
                for c, count in zip(on_dark, resyncs_before, strict=True)
            ],
            recovered_after_s=recovered_after,
            stored=(await stored_messages(cluster.stores, [room_id]))[room_id],
            clients=on_dark,
        )
        print(
            f"\nredis link stall: {len(sent)} sent from `lit` during {record.passed_at:.2f}s; "
            f"bus_disconnected after {detected_after}s; bus_resubscribed {resubscribed_after}s "
            f"after the link passed; resyncs (s after pass) {record.resyncs}; "
            f"clients on `dark` complete {recovered_after}s after pass; "
            f"held when it passed {[len(h) for h in held_before]} of {len(sent) + 1}"
        )
        yield record
    finally:
        await close_clients(clients)
        for name in ("dark", "lit"):
            await asyncio.to_thread(cluster.retire, name)
        await cluster.heal()


def test_stalled_subscription_is_noticed_within_3_heartbeats(stall: Stall) -> None:
    assert stall.detected_after_s is not None
    assert stall.detected_after_s <= DETECT_WITHIN_S


def test_instance_resubscribes_once_the_link_passes(stall: Stall) -> None:
    assert stall.resubscribed_after_s is not None
    assert stall.resubscribed_after_s <= BACK_WITHIN_S


def test_no_reconnect_is_claimed_while_the_link_is_dark(stall: Stall) -> None:
    assert stall.resubscribed_in_dark == 0
    for times in stall.resyncs:
        assert not [t for t in times if t < 0], times


def test_clients_receive_resync_after_the_reconnect(stall: Stall) -> None:
    for times in stall.resyncs:
        after = [t for t in times if t >= 0]
        assert after, times
        assert min(after) <= BACK_WITHIN_S, times


def test_messages_sent_meanwhile_from_other_instance_are_recovered_by_sync(stall: Stall) -> None:
    assert len(stall.sent) >= 5
    # The stall did cut the live feed: dark's clients lacked some when the link passed...
    for held in stall.held_before_pass:
        assert not dict(stall.sent).items() <= held.items(), held
    # ...and hold all of it (and only what PostgreSQL holds, once each) after `sync`.
    assert stall.recovered_after_s is not None
    assert stall.recovered_after_s <= RECOVER_WITHIN_S
    for client in stall.clients:
        view = next(iter(client.view().values()))
        assert view == stall.stored
        assert not client.conflicts
