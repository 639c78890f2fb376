"""Live connections per user in Redis: a sorted set of connection ids scored by deadline.

A connection counts while its deadline is in the future; the owning instance pushes the
deadline forward on every heartbeat, so a dead instance's connections simply lapse.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from redis.asyncio import Redis

PREFIX = "chat:presence"


def connections_key(user_id: str) -> str:
    return f"{PREFIX}:conns:{user_id}"


class RedisPresence:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return set()
        now_ms = int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for user_id in ids:
                pipe.zcount(connections_key(user_id), now_ms, "+inf")
            counts = await pipe.execute()
        return {user_id for user_id, count in zip(ids, counts, strict=True) if count}
