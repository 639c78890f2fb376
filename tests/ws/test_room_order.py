"""A room's new messages reach the members on one instance in `seq` order, whichever road
(committed here, or through the bus from another instance) each one came by."""

from __future__ import annotations

from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

from app.domain.events import RoomMessage
from app.infra.bus import channels, envelope
from app.infra.bus.redis import RedisBus
from app.infra.loop_lag import LoopLag
from app.infra.metrics import Metrics
from app.ws.connection import Connection
from app.ws.fanout import Fanout
from tests.support import new_user_id
from tests.ws.stand_ins import Lag, Socket

ROOM = "room-order"
HOLD_S = 0.1


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def fanout(redis: Redis, metrics: Metrics) -> Fanout:
    bus = RedisBus(redis, metrics, channels.instance("order"), heartbeat_s=10)
    return Fanout(bus, "order", metrics, cast(LoopLag, Lag()), order_hold_s=HOLD_S)


@pytest.fixture
async def bob(fanout: Fanout) -> Socket:
    socket = Socket(new_user_id("bob"))
    await fanout.add(cast(Connection, socket), [ROOM])
    return socket


def message(seq: int) -> dict[str, Any]:
    return {"type": "message", "message": {"seq": seq}}


def edited(seq: int) -> dict[str, Any]:
    return {"type": "message.updated", "message": {"seq": seq}}


async def sent_here(fanout: Fanout, seq: int) -> None:
    await fanout.publish([RoomMessage(ROOM, message(seq), seq=seq)])


async def sent_elsewhere(fanout: Fanout, seq: int | None, frame: dict[str, Any]) -> None:
    header: dict[str, Any] = {"o": "another-instance", "s": None, "u": None}
    if seq is not None:
        header["q"] = seq
    await fanout.on_bus_message(channels.room(ROOM), envelope.encode(header, orjson.dumps(frame)))


async def test_messages_that_come_in_order_are_pushed_at_once(fanout: Fanout, bob: Socket) -> None:
    await sent_here(fanout, 1)
    await sent_elsewhere(fanout, 2, message(2))
    await sent_here(fanout, 3)

    assert bob.seqs == [1, 2, 3]


async def test_a_message_sent_here_waits_for_an_earlier_one_still_coming_from_another_instance(
    fanout: Fanout, bob: Socket
) -> None:
    await sent_elsewhere(fanout, 7, message(7))

    await sent_here(fanout, 9)
    assert bob.seqs == [7]

    await sent_elsewhere(fanout, 8, message(8))
    assert bob.seqs == [7, 8, 9]


async def test_a_message_that_waits_is_counted(
    fanout: Fanout, bob: Socket, metrics: Metrics
) -> None:
    await sent_here(fanout, 1)
    await sent_here(fanout, 2)
    await sent_here(fanout, 4)

    assert metrics.messages_held._value.get() == 1


async def test_a_gap_that_does_not_fill_releases_the_waiting_messages_in_order_after_the_hold(
    fanout: Fanout, bob: Socket
) -> None:
    await sent_here(fanout, 1)
    await sent_elsewhere(fanout, 4, message(4))
    await sent_here(fanout, 3)
    assert bob.seqs == [1]

    assert await bob.until_seqs(3) == [1, 3, 4]


async def test_a_message_that_comes_after_its_gap_was_given_up_on_is_pushed_at_once(
    fanout: Fanout, bob: Socket
) -> None:
    await sent_here(fanout, 1)
    await sent_here(fanout, 3)
    await bob.until_seqs(2)

    await sent_elsewhere(fanout, 2, message(2))

    assert bob.seqs == [1, 3, 2]


async def test_a_frame_without_a_seq_goes_out_at_once_when_nothing_waits(
    fanout: Fanout, bob: Socket
) -> None:
    await sent_here(fanout, 1)

    await sent_elsewhere(fanout, None, edited(1))

    assert [f["type"] for f in bob.frames] == ["message", "message.updated"]


async def test_an_edit_of_a_waiting_message_does_not_overtake_it(
    fanout: Fanout, bob: Socket
) -> None:
    await sent_here(fanout, 1)
    await sent_here(fanout, 3)
    await fanout.publish([RoomMessage(ROOM, edited(3))])
    assert [f["type"] for f in bob.frames] == ["message"]

    await sent_elsewhere(fanout, 2, message(2))

    assert [(f["type"], f["message"]["seq"]) for f in bob.frames] == [
        ("message", 1),
        ("message", 2),
        ("message", 3),
        ("message.updated", 3),
    ]


async def test_a_room_followed_again_starts_from_the_first_message_it_sees(
    fanout: Fanout, bob: Socket
) -> None:
    await sent_here(fanout, 1)
    await fanout.remove(cast(Connection, bob))
    carol = Socket(new_user_id("carol"))
    await fanout.add(cast(Connection, carol), [ROOM])

    await sent_elsewhere(fanout, 5, message(5))

    assert carol.seqs == [5]
