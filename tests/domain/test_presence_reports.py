"""What a connect or a leave reports to watchers: the registry's state when it reports,
at that state's presence version, so that a report overtaken by a newer transition
elsewhere never has the last word."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.domain import presence
from app.domain.events import Event, PresenceChanged
from app.infra.db.engine import make_sessionmaker
from app.infra.db.queries import users as user_rows
from app.infra.presence.redis import RedisPresence
from app.work import unit_of_work
from tests.support import Stores, new_user_id


@dataclass
class Watchers:
    events: list[PresenceChanged] = field(default_factory=list)

    async def publish(self, events: Iterable[Event], *, wait: bool = True) -> None:
        self.events += [e for e in events if isinstance(e, PresenceChanged)]


@pytest.fixture
async def sessions(stores: Stores) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_async_engine(stores.database_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


@pytest.mark.usefixtures("client")  # the app has migrated the database
async def test_a_leave_whose_user_is_back_elsewhere_keeps_the_last_seen_but_reports_nothing(
    redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    registry = RedisPresence(redis, grace_s=20)
    user, gone, elsewhere = new_user_id("u"), new_user_id("c"), new_user_id("c")
    async with sessions() as session, session.begin():
        await user_rows.ensure_users(session, [user])
    assert await registry.connect(user, gone, 5) == 1
    assert await registry.disconnect(user, gone)  # this leave took the user offline...
    assert await registry.connect(user, elsewhere, 5) == 1  # ...and another instance back
    left_at, watchers = datetime.now(UTC), Watchers()

    now = await presence.now(registry, [user], assumed_online=False)
    async with unit_of_work(sessions, watchers) as work:
        await presence.record_offline(work, [(user, left_at)], now)

    assert watchers.events == []
    async with sessions() as session:
        (row,) = await user_rows.get_users(session, [user])
    assert row["last_seen_at"] == left_at


@pytest.mark.usefixtures("client")
async def test_a_connect_reports_online_at_the_version_its_transition_raised(
    redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    registry = RedisPresence(redis, grace_s=20)
    user, watchers = new_user_id("u"), Watchers()
    assert await registry.connect(user, new_user_id("c"), 5) == 1

    now = await presence.now(registry, [user], assumed_online=True)
    async with unit_of_work(sessions, watchers) as work:
        await presence.announce_online(work, [user], now)

    (reported,) = watchers.events
    assert reported.frame["online"] is True
    assert reported.version == (await registry.snapshot([user])).versions[user]
