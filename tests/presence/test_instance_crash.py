"""`kill -9` of an instance: its users go offline within 3 x heartbeat_s, as seen from the
survivor, with last_seen when the dead instance last vouched for them; the survivor goes on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.cluster import (
    Client,
    Instance,
    Sockets,
    metric_total,
    new_group,
    parse_time,
    rest,
    send_frame,
)
from tests.presence.conftest import DETECTION_S, HEARTBEAT_S, PresenceCluster
from tests.support import new_user_id

# The dead instance vouched for its connections every half heartbeat until it died.
VOUCH_GAP = timedelta(seconds=HEARTBEAT_S / 2 + 0.2)


@dataclass
class Crash:
    """What a watcher on the survivor saw after the other instance was killed."""

    survivor: Instance
    watcher: Client
    watcher_id: str
    room_id: str
    victims: list[str]
    both: str  # a user with a device on each instance
    late: str  # a device on each instance too; the survivor's closes after the kill
    killed_at: datetime
    late_closed_at: datetime
    offline: dict[str, dict[str, Any]] = field(default_factory=dict)
    detected_s: dict[str, float] = field(default_factory=dict)
    detected_at: dict[str, datetime] = field(default_factory=dict)
    later: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
async def crash(presence_cluster: PresenceCluster, p1: Instance) -> AsyncIterator[Crash]:
    victim = presence_cluster.launch("victim")
    viewer, both, late = new_user_id("viewer"), new_user_id("both"), new_user_id("late")
    victims = [new_user_id("victim"), new_user_id("victim")]
    room = await new_group(p1, viewer, both, late, *victims)
    sockets = Sockets()
    try:
        watcher = await sockets.open(p1, viewer)
        await watcher.request({"type": "presence.watch", "user_ids": [*victims, both, late]})
        for user_id in victims:
            await sockets.open(victim, user_id)
        await sockets.open(victim, both)
        await sockets.open(p1, both)
        await sockets.open(victim, late)
        late_device = await sockets.open(p1, late)
        # Every one online, and registered for at least one heartbeat by the victim.
        await asyncio.sleep(HEARTBEAT_S)
        await watcher.drain()

        assert victim.proc is not None
        victim.proc.kill()
        killed_at, started = datetime.now(UTC), time.monotonic()
        # Before the dead instance's connections lapse, `late` closes the other device.
        await asyncio.sleep(HEARTBEAT_S * 0.8)
        late_closed_at = datetime.now(UTC)
        await late_device.close()
        result = Crash(
            p1, watcher, viewer, room["id"], victims, both, late, killed_at, late_closed_at
        )
        # Wait well past the bound, so a late detection is measured rather than just missed.
        with contextlib.suppress(TimeoutError):
            while len(result.offline) < len(victims) + 1:
                frame = await watcher.wait(
                    lambda f: f["type"] == "presence", timeout_s=3 * DETECTION_S
                )
                result.offline.setdefault(frame["user_id"], frame)
                result.detected_s.setdefault(frame["user_id"], time.monotonic() - started)
                result.detected_at.setdefault(frame["user_id"], datetime.now(UTC))
        print(f"kill -9: offline after {result.detected_s}")
        result.later = await watcher.drain(quiet_s=DETECTION_S / 2)
        yield result
    finally:
        await sockets.close()
        if victim.proc is not None:
            victim.proc.kill()
            victim.proc.wait(10)


async def test_users_of_a_killed_instance_go_offline_within_three_heartbeats(
    crash: Crash,
) -> None:
    assert sorted(crash.offline) == sorted([*crash.victims, crash.late]), crash.offline
    for user_id in crash.victims:
        assert crash.offline[user_id]["online"] is False
        assert crash.detected_s[user_id] <= DETECTION_S, crash.detected_s
    # Exactly once each; and the user with a device on the survivor stays online.
    assert [f for f in crash.later if f["type"] == "presence"] == []


async def test_last_seen_after_a_kill_is_when_the_dead_instance_last_vouched(
    crash: Crash,
) -> None:
    for user_id in crash.victims:
        last_seen = parse_time(crash.offline[user_id]["last_seen"])
        assert crash.killed_at - VOUCH_GAP <= last_seen, (last_seen, crash.killed_at)
        assert last_seen <= crash.killed_at + timedelta(seconds=0.05), (last_seen, crash.killed_at)
        assert last_seen <= crash.detected_at[user_id]
        resp = await rest(crash.survivor, crash.watcher_id, "GET", f"/v1/users/{user_id}")
        assert resp.json()["online"] is False
        assert parse_time(resp.json()["last_seen"]) == last_seen


async def test_last_seen_is_when_the_last_device_closed_though_a_dead_one_lapsed_later(
    crash: Crash,
) -> None:
    # `late` left the survivor after the kill, while the dead instance's connection of
    # `late` still counted as live; the sweep that finally takes `late` offline must not
    # date it back to when the dead instance last vouched.
    frame = crash.offline[crash.late]
    assert frame["online"] is False
    last_seen = parse_time(frame["last_seen"])
    assert last_seen >= crash.late_closed_at - timedelta(seconds=0.1), (
        last_seen,
        crash.late_closed_at,
        crash.killed_at,
    )
    assert last_seen <= crash.detected_at[crash.late]


async def test_user_with_a_device_on_the_survivor_stays_online_after_a_kill(
    crash: Crash,
) -> None:
    assert crash.both not in crash.offline
    resp = await rest(crash.survivor, crash.watcher_id, "GET", f"/v1/users/{crash.both}")
    assert resp.json()["online"] is True


async def test_survivor_keeps_serving_after_a_kill(crash: Crash) -> None:
    ack = await crash.watcher.request(send_frame(crash.room_id, "still here"))
    assert ack["message"]["body"] == "still here"
    resp = await rest(crash.survivor, crash.watcher_id, "GET", "/v1/me")
    assert resp.status_code == 200, resp.text


async def test_metrics_count_connections_sweeps_and_dead_connections(crash: Crash) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(f"{crash.survivor.http}/metrics")).text
    connections = metric_total(text, "chat_ws_connections")
    sweeps = metric_total(text, "chat_presence_sweeps_total")
    dead = metric_total(text, "chat_presence_dead_connections_total")
    # The watcher and the survivor's device of `both`.
    assert connections is not None
    assert connections >= 2
    assert sweeps is not None
    assert sweeps > 0
    # Four connections died with the victim (two victims', and one each of both and late).
    assert dead is not None
    assert dead >= 4
