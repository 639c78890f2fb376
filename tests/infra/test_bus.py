"""The Redis bus: what it publishes reaches the other instances, and what only this
instance follows is not sent at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from app.infra.bus import channels
from app.infra.bus.redis import PUBLISH_LUA, RedisBus
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
async def start(redis: Redis) -> AsyncIterator[Callable[..., Instance]]:
    started: list[Instance] = []

    def start(**options: int) -> Instance:
        metrics = Metrics()
        home = channels.instance(new_user_id("i"))
        bus = RedisBus(redis, metrics, home, heartbeat_s=10, **options)
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


async def test_a_publish_that_need_not_wait_returns_before_its_round_trip_and_keeps_its_order(
    start: Callable[[], Instance],
) -> None:
    a, b, room = await both_following(start)

    first = asyncio.create_task(a.bus.publish([(room, b"first")], wait=False))
    second = asyncio.create_task(a.bus.publish([(room, b"second")]))
    await asyncio.sleep(0)  # one step of each: no round trip can have been made yet

    assert first.done()
    assert first.result() is True
    assert not second.done()
    assert await second
    assert [await b.next_received(), await b.next_received()] == [
        (room, b"first"),
        (room, b"second"),
    ]


async def test_a_publish_that_need_not_wait_waits_once_the_backlog_is_full(
    start: Callable[..., Instance],
) -> None:
    a = start(max_backlog=2)
    room = channels.room(new_user_id("room"))

    publishing = asyncio.create_task(a.bus.publish([(room, b"1"), (room, b"2")], wait=False))
    await asyncio.sleep(0)

    assert not publishing.done()
    assert await publishing


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


async def subscribed(redis: Redis, *names: str) -> PubSub:
    """A subscription Redis has confirmed."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(*names)
    confirmed = 0
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while confirmed < len(names):
        assert asyncio.get_running_loop().time() < deadline, "not confirmed"
        message = await pubsub.get_message(timeout=0.1)
        confirmed += message is not None and message["type"] == "subscribe"
    return pubsub


async def test_the_script_skips_a_channel_only_the_claimant_follows(redis: Redis) -> None:
    publish = redis.register_script(PUBLISH_LUA.read_text())
    home, room = channels.instance(new_user_id("i")), channels.room(new_user_id("room"))
    claimant = await subscribed(redis, home, room)
    try:
        assert await publish(args=[home, room, b"own", 1]) == 0
        assert await publish(args=[home, room, b"unclaimed", 0]) == 1
    finally:
        await claimant.aclose()  # type: ignore[no-untyped-call]


async def test_the_script_ignores_a_claim_once_the_claimants_connection_is_gone(
    redis: Redis,
) -> None:
    publish = redis.register_script(PUBLISH_LUA.read_text())
    home, room = channels.instance(new_user_id("i")), channels.room(new_user_id("room"))
    claimant = await subscribed(redis, home, room)
    other = await subscribed(redis, room)
    try:
        await claimant.aclose()  # type: ignore[no-untyped-call]
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while (await redis.pubsub_numsub(home))[0][1]:
            assert asyncio.get_running_loop().time() < deadline, "still subscribed"
            await asyncio.sleep(0.01)

        # The claimant does not know yet, and still claims the room as its own.
        assert await publish(args=[home, room, b"after", 1]) == 1
        message = None
        while message is None or message["type"] != "message":
            message = await other.get_message(timeout=WAIT_S)
            assert message is not None, "not published"
        assert message["data"] == b"after"
    finally:
        await other.aclose()  # type: ignore[no-untyped-call]


async def test_until_subscribed_returns_once_redis_counts_the_subscription(
    start: Callable[..., Instance], redis: Redis
) -> None:
    instance = start()
    await asyncio.wait_for(instance.bus.connected.wait(), WAIT_S)
    channel = channels.watch(new_user_id("watched"))

    await instance.bus.subscribe([channel])
    confirmed = await instance.bus.until_subscribed([channel])

    assert confirmed
    assert await redis.pubsub_numsub(channel) == [(channel.encode(), 1)]


async def test_until_subscribed_does_not_wait_while_the_bus_is_down(
    start: Callable[..., Instance],
) -> None:
    instance = start()
    await asyncio.wait_for(instance.bus.connected.wait(), WAIT_S)
    instance.bus.connected.clear()  # as the reader does when its connection fails
    channel = channels.watch(new_user_id("watched"))
    await instance.bus.subscribe([channel])  # remembered, to subscribe once back

    started = asyncio.get_running_loop().time()
    confirmed = await instance.bus.until_subscribed([channel], timeout_s=WAIT_S)

    assert not confirmed
    assert asyncio.get_running_loop().time() - started < WAIT_S / 2
