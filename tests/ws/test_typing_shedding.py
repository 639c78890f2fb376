"""Typing gives way while an instance is behind; chat messages and typing stops never do."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.domain.events import RoomMessage
from app.domain.typing_indicators import TypingIndicators
from app.infra.bus import channels, envelope
from app.infra.bus.redis import RedisBus
from app.infra.loop_lag import LoopLag
from app.infra.metrics import Metrics
from app.ws.connection import Connection
from app.ws.fanout import Fanout
from tests.support import new_user_id
from tests.ws.stand_ins import WAIT_S, Lag, Socket

ROOM = "room-shedding"


@pytest.fixture
def lag() -> Lag:
    return Lag(behind=True)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def fanout(redis: Redis, lag: Lag, metrics: Metrics) -> Fanout:
    bus = RedisBus(redis, metrics, channels.instance("shedding"), heartbeat_s=10)
    return Fanout(bus, "shedding", metrics, cast(LoopLag, lag), order_hold_s=0.5)


async def listener(fanout: Fanout) -> Socket:
    socket = Socket(new_user_id("bob"))
    await fanout.add(cast(Connection, socket), [ROOM])
    return socket


async def next_published(pubsub: PubSub) -> dict[str, Any] | None:
    """The next message on `pubsub` (skipping subscribe confirmations), or None in time."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None:
            return cast(dict[str, Any], message)
    return None


async def test_a_typing_start_is_dropped_while_the_loop_is_behind(
    fanout: Fanout, metrics: Metrics
) -> None:
    bob = await listener(fanout)

    await TypingIndicators(fanout).update("c1", new_user_id("alice"), ROOM, True, [ROOM])

    assert bob.frames == []
    assert metrics.frames_shed._value.get() == 1


async def test_a_typing_start_is_delivered_while_the_loop_keeps_up(
    fanout: Fanout, lag: Lag
) -> None:
    lag.behind = False
    bob = await listener(fanout)

    await TypingIndicators(fanout).update("c1", new_user_id("alice"), ROOM, True, [ROOM])

    assert [f["active"] for f in bob.frames] == [True]


async def test_a_typing_stop_is_delivered_while_the_loop_is_behind(
    fanout: Fanout, lag: Lag
) -> None:
    lag.behind = False
    bob = await listener(fanout)
    typing = TypingIndicators(fanout, throttle_s=0)
    await typing.update("c1", new_user_id("alice"), ROOM, True, [ROOM])
    lag.behind = True

    await typing.connection_closed("c1")

    assert [f["active"] for f in bob.frames] == [True, False]


async def test_a_chat_message_is_delivered_while_the_loop_is_behind(fanout: Fanout) -> None:
    bob = await listener(fanout)

    await fanout.publish([RoomMessage(ROOM, {"type": "message", "seq": 1})])

    assert bob.frames == [{"type": "message", "seq": 1}]


async def test_a_dropped_typing_start_is_not_published_to_the_other_instances(
    fanout: Fanout, redis: Redis
) -> None:
    others = redis.pubsub(ignore_subscribe_messages=True)
    await others.subscribe(channels.room(ROOM))
    try:
        await TypingIndicators(fanout).update("c1", new_user_id("alice"), ROOM, True, [ROOM])
        await fanout.publish([RoomMessage(ROOM, {"type": "message", "seq": 1})])

        first = await next_published(others)
    finally:
        await others.aclose()  # type: ignore[no-untyped-call]

    assert first is not None
    assert envelope.decode(first["data"])[1] == b'{"type":"message","seq":1}'


async def test_typing_from_another_instance_is_dropped_while_the_loop_is_behind(
    fanout: Fanout, lag: Lag
) -> None:
    bob = await listener(fanout)
    frame = orjson.dumps({"type": "typing", "room_id": ROOM, "user_id": "alice", "active": True})
    data = envelope.encode({"o": "other", "u": "alice", "a": 1}, frame)

    await fanout.on_bus_message(channels.room(ROOM), data)
    assert bob.frames == []
    lag.behind = False
    await fanout.on_bus_message(channels.room(ROOM), data)

    assert [f["type"] for f in bob.frames] == ["typing"]
