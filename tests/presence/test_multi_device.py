"""A user is online while any device is connected, on any instance, and every watcher
(on either instance) hears each transition exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.cluster import Client, Instance, Sockets, new_group, parse_time, rest
from tests.support import new_user_id


def _presence_of(frames: list[dict[str, Any]], user_id: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == "presence" and f["user_id"] == user_id]


async def _described(instance: Instance, viewer: str, user_id: str) -> dict[str, Any]:
    resp = await rest(instance, viewer, "GET", f"/v1/users/{user_id}")
    assert resp.status_code == 200, resp.text
    user: dict[str, Any] = resp.json()
    return user


async def test_user_with_devices_on_two_instances_goes_offline_only_with_the_last(
    p1: Instance, p2: Instance, sockets: Sockets
) -> None:
    user, mate1, mate2 = new_user_id("phone"), new_user_id("mate"), new_user_id("mate")
    await new_group(p1, mate1, user, mate2)
    watchers: list[Client] = [await sockets.open(p1, mate1), await sockets.open(p2, mate2)]
    for watcher in watchers:
        ack = await watcher.request({"type": "presence.watch", "user_ids": [user]})
        assert ack["presence"] == [{"user_id": user, "online": False, "last_seen": None}]

    # First device: one `online: true` for every watcher.
    first = await sockets.open(p1, user)
    for watcher in watchers:
        frames = _presence_of(await watcher.drain(quiet_s=0.8), user)
        assert [f["online"] for f in frames] == [True], frames
    assert (await _described(p2, mate2, user))["online"] is True

    # A second device elsewhere, then the first one leaves: still online, nothing pushed.
    second = await sockets.open(p2, user)
    await first.close()
    for watcher in watchers:
        frames = _presence_of(await watcher.drain(quiet_s=1.2), user)
        assert frames == [], frames
    described = await _described(p1, mate1, user)
    assert described["online"] is True
    assert described["last_seen"] is None

    # The last device leaves: one `online: false` with last_seen when it closed.
    before = datetime.now(UTC)
    await second.close()
    after = datetime.now(UTC)
    last_seen: list[datetime] = []
    for watcher in watchers:
        frames = _presence_of(await watcher.drain(quiet_s=1.2), user)
        assert [f["online"] for f in frames] == [False], frames
        last_seen.append(parse_time(frames[0]["last_seen"]))
    assert last_seen[0] == last_seen[1]
    assert before - timedelta(seconds=0.1) <= last_seen[0] <= after + timedelta(seconds=0.5)
    for instance, viewer in ((p1, mate1), (p2, mate2)):
        described = await _described(instance, viewer, user)
        assert described["online"] is False
        assert parse_time(described["last_seen"]) == last_seen[0]
