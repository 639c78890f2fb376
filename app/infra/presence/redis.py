"""Live connections in Redis, after the sorted-set design of mature presence servers.

Per user, a sorted set of connection ids scored by the last time their instance vouched
for them; a global index of the same entries for sweeping; and an `online` flag per user
whose creation and deletion are the online/offline transitions. Each change is one Lua
script (beside this file), so concurrent instances never double-report a transition.
A dead instance's connections simply stop being refreshed and lapse.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from app.domain.ports import PresenceSnapshot

LUA = Path(__file__).with_name("lua")
BATCH = 500


def connections_key(user_id: str) -> str:
    return f"chat:presence:conns:{user_id}"


def version_key(user_id: str) -> str:
    return f"chat:presence:version:{user_id}"


def _now_ms() -> int:
    return int(time.time() * 1000)


class RedisPresence:
    def __init__(self, redis: Redis, grace_s: float) -> None:
        self._redis = redis
        self._grace_ms = int(grace_s * 1000)
        versions = (LUA / "version.lua").read_text()
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(versions + (LUA / f"{name}.lua").read_text())
            for name in ("connect", "disconnect", "refresh", "sweep")
        }

    async def online(self, user_ids: Iterable[str]) -> set[str]:
        return set((await self.snapshot(user_ids)).online)

    async def snapshot(self, user_ids: Iterable[str]) -> PresenceSnapshot:
        """Which users are online, and each one's presence version (`version.lua`), each
        user's pair read in one transaction (no transition can fall between the two), in
        slices of BATCH users so that no call is long in Redis."""
        ids = list(dict.fromkeys(user_ids))
        online: set[str] = set()
        versions: dict[str, int] = {}
        for start in range(0, len(ids), BATCH):
            part = ids[start : start + BATCH]
            counts, found = await self._counts_and_versions(part)
            online.update(u for u, count in zip(part, counts, strict=True) if count)
            versions.update((u, int(v)) for u, v in zip(part, found, strict=True) if v is not None)
        return PresenceSnapshot(frozenset(online), versions)

    async def _counts_and_versions(self, ids: list[str]) -> tuple[list[int], list[Any]]:
        try:
            return await self._read_counts_and_versions(ids)
        except RedisConnectionError:
            # A pipeline, unlike a single command, does not retry on a pooled connection
            # that went stale (Redis restarted); this second try gets a fresh one.
            return await self._read_counts_and_versions(ids)

    async def _read_counts_and_versions(self, ids: list[str]) -> tuple[list[int], list[Any]]:
        floor = _now_ms() - self._grace_ms
        async with self._redis.pipeline(transaction=True) as pipe:
            for user_id in ids:
                pipe.zcount(connections_key(user_id), floor, "+inf")
            pipe.mget([version_key(user_id) for user_id in ids])
            *counts, versions = await pipe.execute()
        return counts, versions

    async def connect(self, user_id: str, connection_id: str, max_connections: int) -> int:
        """-1 refused (too many connections), 1 the user came online, 0 already online."""
        args: list[str | int] = [user_id, connection_id, _now_ms(), self._grace_ms, max_connections]
        return int(await self._scripts["connect"](args=args))

    async def disconnect(self, user_id: str, connection_id: str) -> bool:
        """True when this took the user offline."""
        args: list[str | int] = [user_id, connection_id, _now_ms(), self._grace_ms]
        return bool(await self._scripts["disconnect"](args=args))

    async def refresh(self, connections: Sequence[tuple[str, str]]) -> list[str]:
        """Vouch for (connection_id, user_id) pairs; returns users that came (back) online."""
        came: list[str] = []
        now = _now_ms()
        for start in range(0, len(connections), BATCH):
            args: list[str | int] = [now]
            for connection_id, user_id in connections[start : start + BATCH]:
                args += [connection_id, user_id]
            result = await self._scripts["refresh"](args=args)
            came += [u.decode() if isinstance(u, bytes) else str(u) for u in result]
        return came

    async def sweep(self, limit: int) -> tuple[int, list[tuple[str, datetime]]]:
        """Remove lapsed connections. Returns how many, and (user, last sign of life) for
        each user this took offline."""
        result = await self._scripts["sweep"](args=[_now_ms(), self._grace_ms, limit])
        removed, flat = int(result[0]), [x.decode() for x in result[1:]]
        offline = [
            (flat[i], datetime.fromtimestamp(int(float(flat[i + 1])) / 1000, UTC))
            for i in range(0, len(flat), 2)
        ]
        return removed, offline
