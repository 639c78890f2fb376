"""The registry's presence versions: raised by every online and offline transition, and
read together with who is online."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from app.infra.presence.redis import RedisPresence, version_key
from tests.support import new_user_id


async def test_each_transition_raises_the_version_and_a_snapshot_reads_it(redis: Redis) -> None:
    registry = RedisPresence(redis, grace_s=20)
    user, first, second = new_user_id("u"), new_user_id("c"), new_user_id("c")

    assert await registry.connect(user, first, 5) == 1
    came = await registry.snapshot([user])
    assert await registry.connect(user, second, 5) == 0  # no transition
    still = await registry.snapshot([user])
    await registry.disconnect(user, first)
    assert await registry.disconnect(user, second)
    went = await registry.snapshot([user])

    assert came.online == {user}
    assert still.versions[user] == came.versions[user]
    assert went.online == frozenset()
    assert went.versions[user] > came.versions[user]


async def test_the_version_rises_past_one_a_restarted_redis_lost(redis: Redis) -> None:
    registry = RedisPresence(redis, grace_s=20)
    user, conn = new_user_id("u"), new_user_id("c")
    assert await registry.connect(user, conn, 5) == 1
    before = (await registry.snapshot([user])).versions[user]
    await redis.delete(version_key(user))
    await asyncio.sleep(0.002)

    assert await registry.disconnect(user, conn)

    assert (await registry.snapshot([user])).versions[user] > before


async def test_a_version_is_kept_for_a_day_not_for_ever(redis: Redis) -> None:
    registry = RedisPresence(redis, grace_s=20)
    user = new_user_id("u")

    assert await registry.connect(user, new_user_id("c"), 5) == 1

    assert 0 < await redis.pttl(version_key(user)) <= 24 * 3600 * 1000
