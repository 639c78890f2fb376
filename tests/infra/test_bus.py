"""The Redis bus: what it publishes reaches the other instances, and what only this
instance follows is not sent at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from app.infra.bus import channels
from app.infra.bus.redis import RedisBus
from app.infra.metrics import Metrics
from tests.support import new_user_id

WAIT_S = 5.0


@dataclass
class Instance:
    """One bus as an instance runs it, with what it received."""

    bus: RedisBus
    metrics: Metrics
    received: list[tuple[str, bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_message(self, channel: str, data: bytes) -> None:
        self.received.append((channel, data))
        self.arrived.set()

    async def on_reconnect(self) -> None:
        pass

    def skipped(self) -> float:
        return float(self.metrics.publishes_skipped._value.get())

    async def next_received(self) -> tuple[str, bytes]:
        self.arrived.clear()
        if not self.received:
            await asyncio.wait_for(self.arrived.wait(), WAIT_S)
        return self.received.pop(0)


@pytest.fixture
async def start(redis: Redis) -> AsyncIterator[Callable[[], Instance]]:
    started: list[Instance] = []

    def start() -> Instance:
        metrics = Metrics()
        bus = RedisBus(redis, metrics, channels.instance(new_user_id("i")), heartbeat_s=10)
        instance = Instance(bus, metrics)
        bus.start(instance.on_message, instance.on_reconnect)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        await instance.bus.stop()


async def until(check: Callable[[], bool], act: Callable[[], object]) -> None:
    """Repeat `act` until `check` holds (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not check():
        assert loop.time() < deadline, "timed out"
        result = act()
        if asyncio.iscoroutine(result):
            await result
        await asyncio.sleep(0.01)


async def both_following(start: Callable[[], Instance]) -> tuple[Instance, Instance, str]:
    """Two instances following one room, once the second is known to receive it."""
    a, b = start(), start()
    room = channels.room(new_user_id("room"))
    await a.bus.subscribe([room])
    await b.bus.subscribe([room])
    await until(lambda: bool(b.received), lambda: a.bus.publish([(room, b"probe")]))
    b.received.clear()
    return a, b, room


async def test_a_publish_reaches_another_instance_that_follows_the_channel(
    start: Callable[[], Instance],
) -> None:
    a, b, room = await both_following(start)

    assert await a.bus.publish([(room, b"hello")])

    assert await b.next_received() == (room, b"hello")


async def test_a_publish_only_this_instance_follows_is_not_sent(
    start: Callable[[], Instance], redis: Redis
) -> None:
    a = start()
    room = channels.room(new_user_id("room"))
    await a.bus.subscribe([room])
    # Until Redis confirms the subscription, publishes go out (and come back).
    await until(lambda: a.skipped() > 0, lambda: a.bus.publish([(room, b"probe")]))
    skipped = a.skipped()
    a.received.clear()

    assert await a.bus.publish([(room, b"own")])
    await redis.publish(room, b"from elsewhere")

    assert await a.next_received() == (room, b"from elsewhere")
    assert a.skipped() == skipped + 1


async def test_a_channel_another_instance_still_follows_is_published_after_this_one_leaves(
    start: Callable[[], Instance],
) -> None:
    a, b, room = await both_following(start)
    await a.bus.unsubscribe([room])

    assert await a.bus.publish([(room, b"after leaving")])

    assert await b.next_received() == (room, b"after leaving")
