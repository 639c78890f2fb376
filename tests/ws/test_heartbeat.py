"""The heartbeat's tick, driven directly against the real registry on Redis and the real
PostgreSQL: a connection that closes while the tick's refresh is on its way (its user goes
offline exactly once, whichever of the tick and the connection's leave reaches Redis
first); a PostgreSQL that refuses a tick (what Redis already gave up is settled on a later
one); and a deferred leave settled in the tick that sees its user back (watchers end on
what the registry says). Only the moment something lands is chosen by the test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import create_async_engine

from app.domain import presence
from app.domain.events import Event, PresenceChanged
from app.domain.ports import PresenceRegistry
from app.domain.pushes import iso_utc
from app.infra.db.engine import make_sessionmaker
from app.infra.db.queries import users as user_rows
from app.infra.metrics import Metrics
from app.infra.presence.redis import RedisPresence, connections_key
from app.infra.redis_client import make_redis
from app.work import unit_of_work
from app.ws import heartbeat as heartbeat_module
from app.ws.fanout import Fanout
from app.ws.heartbeat import SWEEP_SLICE, Heartbeat
from tests.faults.proxy import FaultProxy, target_of
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

    def frames(self, user_id: str) -> list[dict[str, Any]]:
        return [
            e.frame for e in self.events if isinstance(e, PresenceChanged) and e.user_id == user_id
        ]

    def offline(self, user_id: str) -> int:
        return sum(1 for frame in self.frames(user_id) if not frame["online"])

    def last_told(self, user_id: str) -> bool | None:
        """Whether watchers were last told the user is online (None: told nothing)."""
        told = self.frames(user_id)
        return bool(told[-1]["online"]) if told else None


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


@asynccontextmanager
async def _instance(
    database_url: str,
    registry: PresenceRegistry,
    local: LocalConnections,
    *,
    max_deferred_leaves: int = 100,
    metrics: Metrics | None = None,
) -> AsyncIterator[tuple[Heartbeat, Watchers]]:
    """The heartbeat of an instance with these local connections, its ticks left to the
    test, and what it told watchers."""
    watchers = Watchers()
    engine = create_async_engine(database_url)
    sessions = make_sessionmaker(engine)
    heartbeat = Heartbeat(
        registry,
        cast(Fanout, local),
        lambda: unit_of_work(sessions, watchers),
        metrics or Metrics(),
        heartbeat_s=10,
        max_deferred_leaves=max_deferred_leaves,
    )
    try:
        yield heartbeat, watchers
    finally:
        await engine.dispose()


async def _one_tick(
    stores: Stores, registry: PresenceRegistry, local: LocalConnections
) -> Watchers:
    """One heartbeat tick of an instance with these local connections; what it told."""
    async with _instance(stores.database_url, registry, local) as (heartbeat, watchers):
        await heartbeat.tick()
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
    """Another database of the test Redis, one per test process: a sweep with no grace
    there cannot touch the registry the other tests' instances keep, nor a test running
    at the same time in another process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    database = 9 + int(worker) if worker.isdigit() else 9
    url = urlunsplit(urlsplit(stores.redis_url)._replace(path=f"/{database}"))
    client = make_redis(url, 10)
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


# ---- PostgreSQL refusing a tick ---------------------------------------------------------


@pytest.fixture
def postgres_proxy(stores: Stores) -> Iterator[FaultProxy]:
    """The test PostgreSQL behind a fault proxy, for the heartbeat's unit of work only."""
    with FaultProxy(*target_of(stores.database_url), name="pg-heartbeat") as proxy:
        yield proxy


async def _users_in_postgres(stores: Stores, user_ids: Sequence[str]) -> None:
    engine = create_async_engine(stores.database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            await user_rows.ensure_users(session, user_ids)
    finally:
        await engine.dispose()


async def _last_seen_in_postgres(stores: Stores, user_id: str) -> datetime | None:
    engine = create_async_engine(stores.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            (row,) = await user_rows.get_users(session, [user_id])
    finally:
        await engine.dispose()
    last_seen: datetime | None = row["last_seen_at"]
    return last_seen


async def _lapsed_connection(registry: RedisPresence, redis: Redis, user_id: str) -> datetime:
    """Register a connection in a registry with no grace, and let it lapse (as a dead
    instance's does); returns the last time it was vouched for."""
    connection_id = new_user_id("conn")
    assert await registry.connect(user_id, connection_id, 5) == 1
    vouched_ms = await redis.zscore(connections_key(user_id), connection_id)
    assert vouched_ms is not None
    await asyncio.sleep(0.01)  # past the millisecond it was vouched in: lapsed
    return datetime.fromtimestamp(int(vouched_ms) / 1000, UTC)


@pytest.mark.usefixtures("client")
async def test_an_offline_postgresql_refused_is_announced_once_it_is_back(
    stores: Stores, redis_of_its_own: Redis, postgres_proxy: FaultProxy
) -> None:
    user = new_user_id("lapsed")
    await _users_in_postgres(stores, [user])
    lapsing = RedisPresence(redis_of_its_own, grace_s=0)
    vouched_at = await _lapsed_connection(lapsing, redis_of_its_own, user)
    database_url = postgres_proxy.url_for(stores.database_url)

    async with _instance(database_url, lapsing, LocalConnections()) as (heartbeat, watchers):
        await asyncio.to_thread(postgres_proxy.reset)  # connections refused
        await heartbeat.tick()
        # The sweep had taken the connection out of Redis when PostgreSQL refused: from
        # here on only this instance knows the user's offline is not settled.
        assert await redis_of_its_own.zcard(connections_key(user)) == 0
        assert watchers.frames(user) == []
        await asyncio.to_thread(postgres_proxy.pass_through)
        await heartbeat.tick()
        await heartbeat.tick()  # settled once: not told again

    assert watchers.frames(user) == [
        {"type": "presence", "user_id": user, "online": False, "last_seen": iso_utc(vouched_at)}
    ]
    assert await _last_seen_in_postgres(stores, user) == vouched_at


@pytest.mark.usefixtures("client")
async def test_a_full_backlog_of_unsettled_offlines_holds_the_sweep_back_and_drops_nothing(
    stores: Stores,
    redis_of_its_own: Redis,
    postgres_proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(heartbeat_module, "MAX_UNSETTLED", 2)
    first, later = [new_user_id("first") for _ in range(3)], new_user_id("later")
    await _users_in_postgres(stores, [*first, later])
    lapsing = RedisPresence(redis_of_its_own, grace_s=0)
    vouched = {user: await _lapsed_connection(lapsing, redis_of_its_own, user) for user in first}
    database_url = postgres_proxy.url_for(stores.database_url)

    async with _instance(database_url, lapsing, LocalConnections()) as (heartbeat, watchers):
        await asyncio.to_thread(postgres_proxy.reset)
        await heartbeat.tick()  # one slice swept, then refused: a backlog of three
        vouched[later] = await _lapsed_connection(lapsing, redis_of_its_own, later)
        await heartbeat.tick()
        # The backlog is full: the later connection waits in Redis, swept by no one yet.
        assert await redis_of_its_own.zcard(connections_key(later)) == 1
        await asyncio.to_thread(postgres_proxy.pass_through)
        await heartbeat.tick()  # the backlog settles; the sweep still waited for it
        await heartbeat.tick()  # then the later connection is swept and settled

    for user, vouched_at in vouched.items():
        assert [f["last_seen"] for f in watchers.frames(user)] == [iso_utc(vouched_at)], user
        assert await _last_seen_in_postgres(stores, user) == vouched_at


# ---- a deferred leave settled in the tick that sees its user back ----------------------


@pytest.mark.usefixtures("client")
async def test_a_deferred_leave_settled_as_the_refresh_brings_the_user_back_ends_online(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    user, gone, live = new_user_id("back"), new_user_id("gone"), new_user_id("live")
    registry = RedisPresence(redis_of_its_own, grace_s=20)
    assert await registry.connect(user, gone, 5) == 1
    assert await registry.connect(user, live, 5) == 0
    local = LocalConnections({live: LocalConnection(live, user)})
    # Redis restarts and loses its data; `gone` closes meanwhile, so its leave could not
    # reach Redis and is left to the heartbeat. `live` stays open on this instance.
    await redis_of_its_own.flushdb()

    async with _instance(stores.database_url, registry, local) as (heartbeat, watchers):
        heartbeat.leave_later(user, gone, datetime.now(UTC))
        await heartbeat.tick()

    assert await registry.online([user]) == {user}
    assert watchers.last_told(user) is True, watchers.frames(user)
    assert watchers.offline(user) == 0


class ConnectDuringRefresh:
    """The real registry, with another instance's connection landing during the refresh."""

    def __init__(self, real: RedisPresence, connect: Callable[[], Awaitable[int]]):
        self._real, self._connect = real, connect

    async def refresh(self, connections: Sequence[tuple[str, str]]) -> list[str]:
        came = await self._real.refresh(connections)
        assert await self._connect() == 1  # that instance announces the user online
        return came

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.mark.usefixtures("client")
async def test_a_deferred_leave_is_not_announced_over_a_connection_made_elsewhere_meanwhile(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    user, gone, elsewhere = new_user_id("back"), new_user_id("gone"), new_user_id("there")
    real = RedisPresence(redis_of_its_own, grace_s=20)
    assert await real.connect(user, gone, 5) == 1
    # `gone` closed during a Redis blip: its leave is the heartbeat's. While the tick
    # settles it (taking the user offline), the user connects to another instance.
    registry = ConnectDuringRefresh(real, lambda: real.connect(user, elsewhere, 5))

    async with _instance(
        stores.database_url, cast(PresenceRegistry, registry), LocalConnections()
    ) as (heartbeat, watchers):
        heartbeat.leave_later(user, gone, datetime.now(UTC))
        await heartbeat.tick()

    assert await real.online([user]) == {user}
    assert watchers.offline(user) == 0, watchers.frames(user)


# ---- leaves deferred while Redis was away ---------------------------------------------


@pytest.mark.usefixtures("client")
async def test_a_leave_past_the_deferred_bound_is_not_kept_and_its_connection_is_swept(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    kept, dropped = new_user_id("kept"), new_user_id("dropped")
    await _users_in_postgres(stores, [kept, dropped])
    lapsing = RedisPresence(redis_of_its_own, grace_s=0)
    kept_conn, dropped_conn = new_user_id("conn"), new_user_id("conn")
    assert await lapsing.connect(kept, kept_conn, 5) == 1
    assert await lapsing.connect(dropped, dropped_conn, 5) == 1
    vouched_ms = await redis_of_its_own.zscore(connections_key(dropped), dropped_conn)
    assert vouched_ms is not None
    await asyncio.sleep(0.01)  # both lapse; each leave's own time is after its vouching
    kept_left_at = datetime.now(UTC)

    metrics = Metrics()

    async with _instance(
        stores.database_url, lapsing, LocalConnections(), max_deferred_leaves=1, metrics=metrics
    ) as (heartbeat, watchers):
        heartbeat.leave_later(kept, kept_conn, kept_left_at)
        heartbeat.leave_later(dropped, dropped_conn, datetime.now(UTC))
        await heartbeat.tick()

    assert metrics.deferred_leaves_dropped._value.get() == 1
    assert [f["last_seen"] for f in watchers.frames(kept)] == [iso_utc(kept_left_at)]
    # Not lost: swept, with the last time its instance vouched for it.
    vouched_at = datetime.fromtimestamp(int(vouched_ms) / 1000, UTC)
    assert [f["last_seen"] for f in watchers.frames(dropped)] == [iso_utc(vouched_at)]
    assert await lapsing.online([kept, dropped]) == set()


@pytest.mark.usefixtures("client")
async def test_an_offline_whose_last_seen_postgresql_refused_is_recorded_and_told_next_tick(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    user, connection_id = new_user_id("refused"), new_user_id("conn")
    await _users_in_postgres(stores, [user])
    registry = RedisPresence(redis_of_its_own, grace_s=20)
    assert await registry.connect(user, connection_id, 5) == 1
    # The leave took the user offline in Redis; recording the last seen then failed.
    assert await registry.disconnect(user, connection_id)
    left_at = datetime.now(UTC)

    async with _instance(stores.database_url, registry, LocalConnections()) as (
        heartbeat,
        watchers,
    ):
        heartbeat.offline_later(user, left_at)
        await heartbeat.tick()

    assert [f["last_seen"] for f in watchers.frames(user)] == [iso_utc(left_at)]
    assert await _last_seen_in_postgres(stores, user) == left_at


# ---- a registry left unattended (Redis out of every instance's reach) ----------------

UNATTENDED_GRACE_S = 0.3


async def _unattended_for_longer_than_the_grace(
    stores: Stores, redis: Redis
) -> tuple[RedisPresence, LocalConnections, str]:
    """A registry with a user connected here and one connected to another instance; both
    vouched for, swept once, then nobody reaches Redis for twice the grace. Returns the
    registry, this instance's connections and the other instance's user."""
    registry = RedisPresence(redis, grace_s=UNATTENDED_GRACE_S)
    here_user, there_user = new_user_id("here"), new_user_id("there")
    here_conn = new_user_id("conn")
    await _users_in_postgres(stores, [here_user, there_user])
    assert await registry.connect(here_user, here_conn, 5) == 1
    assert await registry.connect(there_user, new_user_id("conn"), 5) == 1
    assert await registry.sweep(SWEEP_SLICE) == (0, [])  # attended until now
    await asyncio.sleep(2 * UNATTENDED_GRACE_S)
    return (
        registry,
        LocalConnections({here_conn: LocalConnection(here_conn, here_user)}),
        there_user,
    )


@pytest.mark.usefixtures("client")
async def test_the_first_tick_after_redis_was_out_of_reach_takes_no_one_elsewhere_offline(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    registry, here, there_user = await _unattended_for_longer_than_the_grace(
        stores, redis_of_its_own
    )

    async with _instance(stores.database_url, registry, here) as (heartbeat, watchers):
        await heartbeat.tick()  # this instance reaches Redis again before the other one

    assert watchers.offline(there_user) == 0
    assert await redis_of_its_own.zcard(connections_key(there_user)) == 1


@pytest.mark.usefixtures("client")
async def test_a_connection_nobody_vouches_for_within_a_grace_after_that_is_swept(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    registry, here, there_user = await _unattended_for_longer_than_the_grace(
        stores, redis_of_its_own
    )

    async with _instance(stores.database_url, registry, here) as (heartbeat, watchers):
        # The other instance never comes back: its connection was dead after all. This
        # one ticks on, more often than the grace, as instances do (every half heartbeat).
        for _ in range(5):
            await heartbeat.tick()
            await asyncio.sleep(UNATTENDED_GRACE_S / 3)
        await heartbeat.tick()

    assert watchers.offline(there_user) == 1
    assert await registry.online([there_user]) == set()


@pytest.mark.usefixtures("client")
async def test_an_offline_a_sweep_finds_is_reported_at_the_version_it_raised(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    user = new_user_id("lapsed")
    await _users_in_postgres(stores, [user])
    lapsing = RedisPresence(redis_of_its_own, grace_s=0)
    await _lapsed_connection(lapsing, redis_of_its_own, user)
    came = (await lapsing.snapshot([user])).versions[user]

    watchers = await _one_tick(stores, lapsing, LocalConnections())

    (reported,) = [e for e in watchers.events if isinstance(e, PresenceChanged)]
    assert reported.frame["online"] is False
    assert reported.version == (await lapsing.snapshot([user])).versions[user]
    assert reported.version is not None
    assert reported.version > came


@pytest.mark.usefixtures("client")
async def test_a_user_whose_offline_postgresql_refuses_for_good_does_not_hold_up_the_others(
    stores: Stores, redis_of_its_own: Redis
) -> None:
    user, poisoned = new_user_id("fine"), "refused\x00by-postgresql"  # no NUL in a text
    await _users_in_postgres(stores, [user])
    registry = RedisPresence(redis_of_its_own, grace_s=20)
    left_at, metrics = datetime.now(UTC), Metrics()

    async with _instance(stores.database_url, registry, LocalConnections(), metrics=metrics) as (
        heartbeat,
        watchers,
    ):
        heartbeat.offline_later(poisoned, left_at)
        heartbeat.offline_later(user, left_at)
        await heartbeat.tick()
        await heartbeat.tick()  # nothing left to retry

    assert [f["last_seen"] for f in watchers.frames(user)] == [iso_utc(left_at)]
    assert metrics.presence_settles_dropped._value.get() == 1
