"""The heartbeat's tick against a connection that closes while the tick's refresh is on
its way: its user goes offline exactly once, whichever of the tick and the connection's
leave reaches Redis first. The registry is the real one on Redis; only the moment the
leave lands is chosen by the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from app.domain import presence
from app.domain.events import Event, PresenceChanged
from app.domain.ports import PresenceRegistry
from app.infra.db.engine import make_sessionmaker
from app.infra.metrics import Metrics
from app.infra.presence.redis import RedisPresence
from app.infra.redis_client import make_redis
from app.work import unit_of_work
from app.ws.fanout import Fanout
from app.ws.heartbeat import SWEEP_SLICE, Heartbeat
from tests.support import Stores, new_user_id


@dataclass
class LocalConnection:
    id: str
    user_id: str


@dataclass
class LocalConnections:
    """What the heartbeat reads of this instance's fan-out: its live connections."""

    connections: dict[str, LocalConnection] = field(default_factory=dict)


@dataclass
class Watchers:
    """Where committed presence events go: kept, to be looked at."""

    events: list[Event] = field(default_factory=list)

    async def publish(self, events: Iterable[Event], *, wait: bool = True) -> None:
        self.events.extend(events)

    def offline(self, user_id: str) -> int:
        return sum(
            1
            for e in self.events
            if isinstance(e, PresenceChanged) and e.user_id == user_id and not e.frame["online"]
        )


class LeaveDuringRefresh:
    """The real registry, with a leave landing just before or just after the refresh."""

    def __init__(self, real: RedisPresence, leave: Callable[[], Awaitable[None]], first: bool):
        self._real, self._leave, self._leave_first = real, leave, first

    async def refresh(self, connections: Sequence[tuple[str, str]]) -> list[str]:
        if self._leave_first:
            await self._leave()
        came = await self._real.refresh(connections)
        if not self._leave_first:
            await self._leave()
        return came

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
async def redis(stores: Stores) -> AsyncIterator[Redis]:
    client = make_redis(stores.redis_url, health_check_interval_s=10)
    yield client
    await client.aclose()


async def _one_tick(
    stores: Stores, registry: PresenceRegistry, local: LocalConnections
) -> Watchers:
    """One heartbeat tick of an instance with these local connections; what it told."""
    watchers = Watchers()
    engine = create_async_engine(stores.database_url)
    sessions = make_sessionmaker(engine)
    heartbeat = Heartbeat(
        registry,
        cast(Fanout, local),
        lambda: unit_of_work(sessions, watchers),
        Metrics(),
        heartbeat_s=10,
    )
    try:
        await heartbeat.tick()
    finally:
        await engine.dispose()
    return watchers


async def _tick_racing_a_leave(
    stores: Stores, redis: Redis, *, leave_reaches_redis: str
) -> tuple[Watchers, bool, str]:
    """One connection of one user; it closes while a tick's refresh is on its way. The
    leave takes the connection out of the local set at once (as `session.leave` does),
    and reaches Redis before the refresh or not until the tick is over. Returns the
    events and whether the leave itself took the user offline."""
    user, connection_id = new_user_id("hb"), new_user_id("conn")
    store = RedisPresence(redis, grace_s=20)
    assert await store.connect(user, connection_id, 5) == 1
    local = LocalConnections({connection_id: LocalConnection(connection_id, user)})
    left: list[bool] = []

    async def leave() -> None:
        local.connections.pop(connection_id, None)
        if leave_reaches_redis == "before_refresh":
            left.append(await presence.leave(store, user, connection_id))

    registry = LeaveDuringRefresh(store, leave, first=leave_reaches_redis == "before_refresh")
    watchers = await _one_tick(stores, cast(PresenceRegistry, registry), local)
    if leave_reaches_redis == "after_tick":
        left.append(await presence.leave(store, user, connection_id))
    return watchers, any(left), user


@pytest.mark.usefixtures("client")  # the app has migrated the database
async def test_a_leave_that_reaches_redis_after_the_tick_leaves_the_offline_to_the_tick(
    stores: Stores, redis: Redis
) -> None:
    watchers, leave_went_offline, user = await _tick_racing_a_leave(
        stores, redis, leave_reaches_redis="after_tick"
    )

    assert not leave_went_offline
    assert watchers.offline(user) == 1


@pytest.mark.usefixtures("client")
async def test_a_leave_that_reaches_redis_before_the_refresh_is_not_announced_again(
    stores: Stores, redis: Redis
) -> None:
    watchers, leave_went_offline, user = await _tick_racing_a_leave(
        stores, redis, leave_reaches_redis="before_refresh"
    )

    assert leave_went_offline
    assert watchers.offline(user) == 0


@pytest.fixture
async def redis_of_its_own(stores: Stores) -> AsyncIterator[Redis]:
    """Another database of the test Redis: a sweep with no grace there cannot touch the
    registry the other tests' instances keep."""
    client = make_redis(urlunsplit(urlsplit(stores.redis_url)._replace(path="/9")), 10)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.mark.usefixtures("client")
async def test_one_tick_sweeps_every_lapsed_connection_not_one_slice(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    # A registry with no grace: every connection lapses at once, as a dead instance's do.
    lapsing = RedisPresence(redis_of_its_own, grace_s=0)
    users = [new_user_id("gone") for _ in range(SWEEP_SLICE * 2 + 10)]
    for user in users:
        await lapsing.connect(user, new_user_id("conn"), 5)
    watchers = await _one_tick(stores, lapsing, LocalConnections())

    assert all(watchers.offline(user) == 1 for user in users)
    assert await lapsing.online(users) == set()
