"""PostgreSQL stalled for 10 s behind a black-holing proxy, then reset (connections cut,
new ones refused): every request that needs the database fails fast with 503 UNAVAILABLE
(never hangs, never 500), the WebSocket stays alive, nothing acknowledged is lost, and the
service recovers by itself once PostgreSQL is reachable again.

The stall runs once (the `stall` fixture) and each test checks one behaviour of it.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.cluster import Instance
from tests.faults.conftest import (
    ChatClient,
    FaultCluster,
    Outcome,
    close_clients,
    new_group,
    open_clients,
    rest,
    stored_client_ids,
    stored_messages,
)
from tests.support import PROBLEM_JSON, new_user_id

STALL_S = 10.0
# The contract under test.
FAIL_WITHIN_S = 5.0
RECOVER_WITHIN_S = 5.0
PONG_WITHIN_S = 1.0
# Reset: refused connections are noticed at once, so "fast" is far below the stall bound.
RESET_FAIL_WITHIN_S = 1.0
RESET_S = 3.0
# Every request is bounded well past the contract, so a miss is measured, not hung on.
REQUEST_TIMEOUT_S = 15.0
PING_EVERY_S = 0.25


@dataclass
class Call:
    """One REST request or WebSocket frame and what came of it."""

    route: str
    instance: str
    started: float  # seconds since the fault began
    latency_s: float
    status: int  # HTTP status; for frames 200 = ack, 503 = UNAVAILABLE error, 0 = other
    content_type: str = ""
    code: str | None = None
    message: dict[str, Any] | None = None
    client_msg_id: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def ended(self) -> float:
        return self.started + self.latency_s


@dataclass
class Fault:
    """What happened while PostgreSQL was unreachable, and after."""

    duration_s: float
    passed_at: float = 0.0  # when the proxy let PostgreSQL through again
    calls: list[Call] = field(default_factory=list)  # started during the fault
    # (instance, sent (s since the fault began), round trip or None: no pong in time)
    pings: list[tuple[str, float, float | None]] = field(default_factory=list)
    recovered_after_s: dict[str, float | None] = field(default_factory=dict)
    acked: list[dict[str, Any]] = field(default_factory=list)  # before, during, after
    stored: dict[str, dict[int, str]] = field(default_factory=dict)
    stored_client_ids: set[str] = field(default_factory=set)


async def _rest_call(
    instance: Instance,
    user: str,
    route: str,
    method: str,
    path: str,
    origin: float,
    body: dict[str, Any] | None = None,
) -> Call:
    started = time.monotonic()
    try:
        resp = await rest(instance, user, method, path, body, timeout_s=REQUEST_TIMEOUT_S)
    except httpx.HTTPError:
        return Call(route, instance.name, started - origin, time.monotonic() - started, 0)
    latency = time.monotonic() - started
    ctype = resp.headers.get("content-type", "")
    data = resp.json() if ctype.startswith(("application/json", PROBLEM_JSON)) else {}
    return Call(
        route,
        instance.name,
        started - origin,
        latency,
        resp.status_code,
        ctype,
        data.get("code") if isinstance(data, dict) else None,
        data if route == "send" and resp.status_code == 201 else None,
        body["client_msg_id"] if body is not None else None,
    )


def _rest_routes(
    instance: Instance, user: str, room_id: str, origin: float
) -> list[Callable[[], Awaitable[Call]]]:
    """The REST requests exercised: each needs the database."""

    def send() -> Awaitable[Call]:
        payload = {"client_msg_id": str(uuid.uuid4()), "kind": "text", "body": "rest"}
        return _rest_call(
            instance, user, "send", "POST", f"/v1/rooms/{room_id}/messages", origin, payload
        )

    return [
        lambda: _rest_call(instance, user, "list_rooms", "GET", "/v1/rooms", origin),
        lambda: _rest_call(
            instance, user, "history", "GET", f"/v1/rooms/{room_id}/messages", origin
        ),
        send,
        lambda: _rest_call(instance, user, "me", "GET", "/v1/me", origin),
    ]


async def _ws_send(client: ChatClient, room_id: str, origin: float) -> Call:
    client_msg_id = str(uuid.uuid4())
    outcome = await client.send_text(room_id, "ws", client_msg_id)
    return _frame_call("ws_send", client, outcome, origin, client_msg_id)


def _frame_call(
    route: str, client: ChatClient, outcome: Outcome, origin: float, client_msg_id: str
) -> Call:
    status = {"ack": 200, "error": 503 if outcome.code == "UNAVAILABLE" else 0}.get(outcome.kind, 0)
    return Call(
        route,
        client.instance.name,
        outcome.sent_at - origin,
        outcome.latency_s,
        status,
        code=outcome.code,
        message=outcome.message if outcome.kind == "ack" else None,
        client_msg_id=client_msg_id,
    )


async def _keep_calling(
    calls: list[Call], make: list[Callable[[], Awaitable[Call]]], until: float
) -> None:
    """Call the routes in turn, one at a time, until `until` (monotonic)."""
    i = 0
    while time.monotonic() < until:
        calls.append(await make[i % len(make)]())
        i += 1
        await asyncio.sleep(0.1)


async def _keep_pinging(
    client: ChatClient, stop: asyncio.Event
) -> list[tuple[str, float, float | None]]:
    """(instance, sent at (monotonic), round trip or None when no pong came in time)."""
    seen: list[tuple[str, float, float | None]] = []
    while not stop.is_set():
        outcome = await client.ping(timeout_s=5.0)
        rtt = outcome.latency_s if outcome.kind == "pong" else None
        seen.append((client.instance.name, outcome.sent_at, rtt))
        await asyncio.sleep(PING_EVERY_S)
    return seen


async def _recovery(
    cluster: FaultCluster, user: str, room_id: str, sender: ChatClient, origin: float
) -> dict[str, float | None]:
    """Seconds from `origin` until each route first succeeds again (None: not in 15 s)."""
    found: dict[str, float | None] = {}

    async def first_ok(name: str, attempt: Callable[[], Awaitable[bool]]) -> None:
        found[name] = None
        while time.monotonic() - origin < REQUEST_TIMEOUT_S:
            if await attempt():
                found[name] = time.monotonic() - origin
                return
            await asyncio.sleep(0.05)

    async def rest_ok(instance: Instance) -> bool:
        try:
            resp = await rest(instance, user, "GET", "/v1/rooms", timeout_s=REQUEST_TIMEOUT_S)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def ws_ok() -> bool:
        return (await sender.send_text(room_id, "after")).kind == "ack"

    await asyncio.gather(
        first_ok("rest_a", lambda: rest_ok(cluster.a)),
        first_ok("rest_b", lambda: rest_ok(cluster.b)),
        first_ok("ws_send", ws_ok),
    )
    return found


async def _run_fault(
    cluster: FaultCluster, start_fault: Callable[[], None], duration_s: float
) -> Fault:
    users = {name: new_user_id(f"pg-{name}") for name in ("sa", "sb", "pa", "pb")}
    room_id = await new_group(cluster.a, users["sa"], [users["sb"], users["pa"], users["pb"]])
    clients = await open_clients(
        [
            (cluster.a, users["sa"], [room_id]),
            (cluster.b, users["sb"], [room_id]),
            (cluster.a, users["pa"], [room_id]),
            (cluster.b, users["pb"], [room_id]),
        ]
    )
    senders, pingers = clients[:2], clients[2:]
    fault = Fault(duration_s=duration_s)
    ping_tasks: list[asyncio.Task[list[tuple[str, float, float | None]]]] = []
    try:
        for sender in senders:  # acknowledged before the fault
            outcome = await sender.send_text(room_id, "before")
            assert outcome.kind == "ack", outcome
        stop_pings = asyncio.Event()
        ping_tasks += [asyncio.create_task(_keep_pinging(p, stop_pings)) for p in pingers]
        await asyncio.sleep(0.5)  # a few pongs before, as a baseline

        start_fault()
        origin = time.monotonic()
        until = origin + duration_s

        async def end_fault() -> float:
            await asyncio.sleep(max(0.0, until - time.monotonic()))
            await asyncio.to_thread(cluster.pg_proxy.pass_through)
            return time.monotonic()

        ending = asyncio.create_task(end_fault())
        # Each route called over and over on both instances, all at once.
        loops = [
            _keep_calling(fault.calls, [route], until)
            for instance in (cluster.a, cluster.b)
            for route in _rest_routes(instance, users["sa"], room_id, origin)
        ]
        loops += [
            _keep_calling(fault.calls, [functools.partial(_ws_send, s, room_id, origin)], until)
            for s in senders
        ]
        calling = asyncio.gather(*loops)
        # The fault ends on time, whatever is in flight; calls still running then finish
        # as they will (each bounded by REQUEST_TIMEOUT_S) and are kept.
        async with asyncio.timeout(duration_s + REQUEST_TIMEOUT_S):
            back = await ending
        fault.passed_at = back - origin
        recovering = asyncio.create_task(_recovery(cluster, users["sa"], room_id, senders[0], back))
        async with asyncio.timeout(2 * REQUEST_TIMEOUT_S):
            await calling
            fault.recovered_after_s = await recovering
        for sender in senders:  # acknowledged after the fault
            outcome = await sender.send_text(room_id, "after")
            assert outcome.kind == "ack", outcome
        await asyncio.sleep(1.0)  # pongs after recovery too
        stop_pings.set()
        async with asyncio.timeout(10):
            for pinged in await asyncio.gather(*ping_tasks):
                fault.pings.extend((name, sent - origin, rtt) for name, sent, rtt in pinged)
        fault.acked = [
            m for sender in senders for msgs in sender.held.values() for m in msgs.values()
        ] + [c.message for c in fault.calls if c.message is not None]
        fault.stored = await stored_messages(cluster.stores, [room_id])
        fault.stored_client_ids = await stored_client_ids(cluster.stores, [room_id])
        return fault
    finally:
        for task in ping_tasks:
            task.cancel()
        await asyncio.gather(*ping_tasks, return_exceptions=True)
        await close_clients(clients)


def _report(name: str, fault: Fault) -> None:
    failed = [c for c in fault.calls if not c.ok]
    by_route: dict[str, list[float]] = {}
    for call in failed:
        by_route.setdefault(call.route, []).append(call.latency_s)
    rtts = [r for _, _, r in fault.pings if r is not None]
    print(
        f"\n{name}: {len(fault.calls)} calls during the fault, {len(failed)} failed; "
        + "; ".join(
            f"{route} n={len(ls)} max {max(ls):.2f}s median {sorted(ls)[len(ls) // 2]:.2f}s"
            for route, ls in sorted(by_route.items())
        )
        + f"; statuses {sorted({(c.status, c.code) for c in fault.calls}, key=str)}"
        + f"; pings {len(fault.pings)}, missed {len(fault.pings) - len(rtts)}, "
        f"max rtt {max(rtts, default=0):.3f}s; recovery {fault.recovered_after_s}"
    )


@pytest.fixture(scope="module")
async def stall(fault_cluster: FaultCluster) -> AsyncIterator[Fault]:
    await fault_cluster.heal()
    try:
        fault = await _run_fault(fault_cluster, fault_cluster.pg_proxy.blackhole, STALL_S)
        _report("postgres stall", fault)
        yield fault
    finally:
        await fault_cluster.heal()


@pytest.fixture(scope="module")
async def reset(fault_cluster: FaultCluster) -> AsyncIterator[Fault]:
    await fault_cluster.heal()
    try:
        fault = await _run_fault(fault_cluster, fault_cluster.pg_proxy.reset, RESET_S)
        _report("postgres reset", fault)
        yield fault
    finally:
        await fault_cluster.heal()


def _assert_unavailable_in_time(calls: list[Call], passed_at: float, within_s: float) -> None:
    """Every call began with the fault in force: it is answered within `within_s`, with
    503 UNAVAILABLE (a problem document over REST), except one still running when the
    fault ended, which may succeed instead; never anything else."""
    for call in calls:
        assert call.latency_s <= within_s, call
        if call.ok and call.ended >= passed_at:
            continue
        assert call.status == 503, call
        assert call.code == "UNAVAILABLE", call
        if call.route != "ws_send":
            assert call.content_type.startswith(PROBLEM_JSON), call


def test_rest_reads_fail_within_5s_with_503_unavailable_during_stall(stall: Fault) -> None:
    reads = [c for c in stall.calls if c.route in ("list_rooms", "history", "me")]
    assert len(reads) >= 12, stall.calls
    _assert_unavailable_in_time(reads, stall.passed_at, FAIL_WITHIN_S)


def test_rest_send_fails_within_5s_with_503_unavailable_during_stall(stall: Fault) -> None:
    sends = [c for c in stall.calls if c.route == "send"]
    assert len(sends) >= 4, stall.calls
    _assert_unavailable_in_time(sends, stall.passed_at, FAIL_WITHIN_S)


def test_ws_send_gets_unavailable_within_5s_during_stall(stall: Fault) -> None:
    sends = [c for c in stall.calls if c.route == "ws_send"]
    assert len(sends) >= 2, stall.calls
    _assert_unavailable_in_time(sends, stall.passed_at, FAIL_WITHIN_S)


def test_ws_ping_is_answered_throughout_stall(stall: Fault) -> None:
    for name in ("a", "b"):
        during = [(t, r) for n, t, r in stall.pings if n == name and 0 <= t <= stall.passed_at]
        assert len(during) >= STALL_S / (PING_EVERY_S + PONG_WITHIN_S), during
        for started, rtt in during:
            assert rtt is not None, (name, started)
            assert rtt <= PONG_WITHIN_S, (name, started, rtt)


def test_nothing_acknowledged_is_lost_across_stall(stall: Fault) -> None:
    assert len(stall.acked) >= 4  # before and after, on both instances
    stored = next(iter(stall.stored.values()))
    for message in stall.acked:
        assert stored.get(message["seq"]) == message["id"], message
    assert sorted(stored) == list(range(1, len(stored) + 1))
    # UNAVAILABLE means nothing was stored (sends begun once the stall was in force).
    refused = [c for c in stall.calls if c.status == 503 and c.route.endswith("send")]
    for call in refused:
        assert call.client_msg_id not in stall.stored_client_ids, call


def test_recovers_by_itself_within_5s_of_postgres_return(stall: Fault) -> None:
    for route, after in stall.recovered_after_s.items():
        assert after is not None, (route, stall.recovered_after_s)
        assert after <= RECOVER_WITHIN_S, (route, stall.recovered_after_s)


def test_reset_gives_unavailable_fast_never_500(reset: Fault) -> None:
    assert len(reset.calls) >= 10, reset.calls
    assert not [c for c in reset.calls if c.status >= 500 and c.status != 503], reset.calls
    _assert_unavailable_in_time(reset.calls, reset.passed_at, RESET_FAIL_WITHIN_S)
    for route, after in reset.recovered_after_s.items():
        assert after is not None, (route, reset.recovered_after_s)
        assert after <= RECOVER_WITHIN_S, (route, reset.recovered_after_s)
