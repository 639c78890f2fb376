"""Presence reports from different instances can cross on their way: a watcher keeps the
one with the newest presence version, whichever arrives last. A report that comes while a
`presence.watch` is answered waits for the answer, and goes out only if it is newer than
what the answer said."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

from app.domain.events import PresenceChanged
from app.infra.bus import channels, envelope
from app.infra.bus.redis import RedisBus
from app.infra.loop_lag import LoopLag
from app.infra.metrics import Metrics
from app.ws.connection import Connection
from app.ws.fanout import Fanout
from tests.support import new_user_id
from tests.ws.stand_ins import Lag, Socket


@pytest.fixture
async def fanout(redis: Redis) -> Fanout:
    metrics = Metrics()
    bus = RedisBus(redis, metrics, channels.instance("presence-order"), heartbeat_s=10)
    return Fanout(bus, "presence-order", metrics, cast(LoopLag, Lag()), order_hold_s=0.5)


def report(user_id: str, online: bool) -> dict[str, Any]:
    return {"type": "presence", "user_id": user_id, "online": online, "last_seen": None}


async def reported_elsewhere(fanout: Fanout, user_id: str, online: bool, version: int) -> None:
    header = {"o": "another-instance", "v": version}
    data = envelope.encode(header, orjson.dumps(report(user_id, online)))
    await fanout.on_bus_message(channels.watch(user_id), data)


async def watcher_of(fanout: Fanout, user_id: str) -> Socket:
    socket = Socket(new_user_id("watcher"))
    await fanout.add(cast(Connection, socket), [])
    await fanout.watch(cast(Connection, socket), [user_id])
    return socket


async def answering_a_watch(fanout: Fanout, user_id: str) -> Socket:
    """A watcher of the user whose `presence.watch` is being answered."""
    socket = await watcher_of(fanout, user_id)
    fanout.hold_presence(cast(Connection, socket))
    return socket


async def test_a_report_older_than_one_delivered_is_dropped(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await watcher_of(fanout, user)

    await reported_elsewhere(fanout, user, True, version=20)
    await fanout.publish([PresenceChanged(user, report(user, False), version=10)])

    assert [f["online"] for f in watcher.frames] == [True]


async def test_a_newer_report_is_delivered_after_an_older_one(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await watcher_of(fanout, user)

    await fanout.publish([PresenceChanged(user, report(user, False), version=10)])
    await reported_elsewhere(fanout, user, True, version=20)

    assert [f["online"] for f in watcher.frames] == [False, True]


async def test_a_report_of_the_same_version_is_delivered_once(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await watcher_of(fanout, user)

    await fanout.publish([PresenceChanged(user, report(user, True), version=10)])
    await reported_elsewhere(fanout, user, True, version=10)

    assert len(watcher.frames) == 1


async def test_an_unversioned_report_is_always_delivered(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await watcher_of(fanout, user)

    await reported_elsewhere(fanout, user, True, version=20)
    await fanout.publish([PresenceChanged(user, report(user, False))])

    assert [f["online"] for f in watcher.frames] == [True, False]


async def test_versions_are_forgotten_when_the_bus_reconnects(fanout: Fanout) -> None:
    # A Redis that restarted may have lost the versions and count from lower ones.
    user = new_user_id("carol")
    watcher = await watcher_of(fanout, user)
    await reported_elsewhere(fanout, user, True, version=20)

    await fanout.on_bus_reconnect()
    await reported_elsewhere(fanout, user, False, version=5)

    assert [f["online"] for f in watcher.frames if f["type"] == "presence"] == [True, False]


async def test_a_report_newer_than_the_watch_answer_goes_out_after_it(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await answering_a_watch(fanout, user)

    await reported_elsewhere(fanout, user, False, version=30)
    assert watcher.frames == []  # the answer is not out yet
    fanout.release_presence(cast(Connection, watcher), {user: 20})

    assert [f["online"] for f in watcher.frames] == [False]


async def test_a_report_the_watch_answer_already_covers_is_dropped(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await answering_a_watch(fanout, user)

    await reported_elsewhere(fanout, user, False, version=30)
    fanout.release_presence(cast(Connection, watcher), {user: 30})

    assert watcher.frames == []


async def test_only_the_last_report_of_a_user_waits_for_the_watch_answer(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await answering_a_watch(fanout, user)

    await reported_elsewhere(fanout, user, False, version=30)
    await reported_elsewhere(fanout, user, True, version=40)
    fanout.release_presence(cast(Connection, watcher), {user: 20})

    assert [f["online"] for f in watcher.frames] == [True]


async def test_a_report_of_a_user_the_watch_dropped_is_not_sent(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await answering_a_watch(fanout, user)

    await reported_elsewhere(fanout, user, False, version=30)
    await fanout.watch(cast(Connection, watcher), [])
    fanout.release_presence(cast(Connection, watcher), {})

    assert watcher.frames == []


async def test_a_failed_watch_lets_every_kept_report_out(fanout: Fanout) -> None:
    user = new_user_id("carol")
    watcher = await answering_a_watch(fanout, user)

    await reported_elsewhere(fanout, user, False, version=30)
    fanout.release_presence(cast(Connection, watcher), None)

    assert [f["online"] for f in watcher.frames] == [False]


async def test_reports_to_other_watchers_are_not_held(fanout: Fanout) -> None:
    user = new_user_id("carol")
    answering, other = await answering_a_watch(fanout, user), await watcher_of(fanout, user)

    await reported_elsewhere(fanout, user, False, version=30)

    assert (answering.frames, [f["online"] for f in other.frames]) == ([], [False])
