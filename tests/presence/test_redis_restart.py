"""Redis crashes and comes back empty: the instances put their live connections back
within a heartbeat, and last_seen, kept in PostgreSQL, is intact."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.cluster import Client, Instance, Sockets, new_group, parse_time, rest
from tests.presence.conftest import HEARTBEAT_S, PresenceCluster
from tests.support import new_user_id

# One heartbeat to re-register, plus slack for the instances to notice the new Redis.
BACK_ONLINE_S = 3.0


@dataclass
class Restart:
    viewer: str
    watcher: Client  # the viewer, on p1, watching the connected users throughout
    connected: list[str]  # one on each instance, connected throughout
    devices: list[Client]
    gone: str  # went offline before the restart
    gone_last_seen: str
    back_online_s: float | None  # after Redis answered again; None: not within the bound
    presence: dict[str, dict[str, Any]]  # as GET /v1/presence reported it then


async def _presence(instance: Instance, viewer: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    try:
        resp = await rest(instance, viewer, "GET", f"/v1/presence?user_ids={','.join(ids)}")
    except httpx.HTTPError:
        return {}
    if resp.status_code != 200:
        return {}
    return {p["user_id"]: p for p in resp.json()["items"]}


@pytest.fixture(scope="module")
async def restart(
    presence_cluster: PresenceCluster, p1: Instance, p2: Instance
) -> AsyncIterator[Restart]:
    viewer, gone = new_user_id("viewer"), new_user_id("gone")
    connected = [new_user_id("on-p1"), new_user_id("on-p2")]
    await new_group(p1, viewer, gone, *connected)
    ids = [*connected, gone]
    sockets = Sockets()
    try:
        watcher = await sockets.open(p1, viewer)
        await watcher.request({"type": "presence.watch", "user_ids": connected})
        devices = [await sockets.open(p1, connected[0]), await sockets.open(p2, connected[1])]
        left = await sockets.open(p2, gone)
        await left.close()
        deadline = time.monotonic() + 5
        before: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            before = await _presence(p1, viewer, ids)
            if before and before[gone]["last_seen"] and all(before[u]["online"] for u in connected):
                break
            await asyncio.sleep(0.1)
        assert before[gone]["online"] is False, before
        assert before[gone]["last_seen"] is not None, before

        presence_cluster.restart_redis()
        started = time.monotonic()
        back_online_s: float | None = None
        now: dict[str, dict[str, Any]] = {}
        while time.monotonic() - started < BACK_ONLINE_S:
            now = await _presence(p1, viewer, ids)
            if now and all(now[u]["online"] for u in connected):
                back_online_s = time.monotonic() - started
                break
            await asyncio.sleep(0.1)
        print(f"redis restart: connected users online again after {back_online_s}s")
        yield Restart(
            viewer, watcher, connected, devices, gone, before[gone]["last_seen"], back_online_s, now
        )
    finally:
        await sockets.close()


async def test_connected_users_are_online_again_within_a_heartbeat_of_a_redis_restart(
    restart: Restart, p2: Instance
) -> None:
    assert restart.back_online_s is not None, restart.presence
    assert restart.back_online_s <= BACK_ONLINE_S
    # Every instance agrees.
    from_p2 = await _presence(p2, restart.viewer, restart.connected)
    assert all(from_p2[u]["online"] for u in restart.connected), from_p2


async def test_last_seen_survives_a_redis_restart(restart: Restart, p2: Instance) -> None:
    after = await _presence(p2, restart.viewer, [restart.gone])
    assert after[restart.gone]["online"] is False
    assert parse_time(after[restart.gone]["last_seen"]) == parse_time(restart.gone_last_seen)


async def test_leaving_and_sweeping_work_on_the_registry_rebuilt_after_a_redis_restart(
    restart: Restart,
) -> None:
    # Connected users were never offline for their watcher, and are not swept now.
    await asyncio.sleep(3 * HEARTBEAT_S)
    frames = await restart.watcher.drain()
    offline = [f for f in frames if f["type"] == "presence" and not f["online"]]
    assert offline == [], frames
    # Leaving still takes a user offline, exactly once.
    await restart.devices[1].close()
    frames = await restart.watcher.drain(quiet_s=1.2)
    pushed = [f for f in frames if f["type"] == "presence"]
    assert [(f["user_id"], f["online"]) for f in pushed] == [(restart.connected[1], False)]
    assert pushed[0]["last_seen"] is not None
