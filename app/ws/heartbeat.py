"""Each instance's heartbeat: vouch for its live connections in Redis, and sweep.

Every half heartbeat the instance refreshes the registry entries of its connections and
sweeps entries no instance has refreshed for two heartbeats (their instance died or was
cut off), so a dead instance's users go offline within three heartbeats, with the last
time their instance vouched for them as last seen. Sweeping is atomic in Redis, so every
instance can run it at once without a double or a lost offline event.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from redis.exceptions import RedisError

from app import background
from app.domain import presence
from app.domain.ports import PresenceRegistry
from app.infra.metrics import Metrics
from app.work import UnitOfWorkFactory
from app.ws.fanout import Fanout

log = structlog.get_logger(__name__)

# Lapsed connections removed per Redis call, and calls per tick at most (a million).
SWEEP_SLICE = 1000
MAX_SWEEP_SLICES = 1000


class Heartbeat:
    def __init__(
        self,
        store: PresenceRegistry,
        fanout: Fanout,
        work: UnitOfWorkFactory,
        metrics: Metrics,
        heartbeat_s: float,
    ) -> None:
        self._store = store
        self._fanout = fanout
        self._work = work
        self._metrics = metrics
        self._interval = heartbeat_s / 2
        self._pending_leaves: list[tuple[str, str, datetime]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            await background.stop([self._task])

    def leave_later(self, user_id: str, connection_id: str, last_seen: datetime) -> None:
        """A connection ended while Redis was unreachable: unregister it on a later tick."""
        self._pending_leaves.append((user_id, connection_id, last_seen))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick()
            except (RedisError, OSError) as exc:
                self._metrics.store_errors.labels(store="redis").inc()
                log.warning("heartbeat_failed", error=type(exc).__name__)
            except Exception:  # the loop must outlive any one bad tick
                log.exception("heartbeat_tick_failed")

    async def _settle_pending_leaves(self) -> list[tuple[str, datetime]]:
        pending, self._pending_leaves = self._pending_leaves, []
        offline = []
        for index, (user_id, connection_id, last_seen) in enumerate(pending):
            try:
                went = await self._store.disconnect(user_id, connection_id)
                if went or not await self._store.online([user_id]):
                    offline.append((user_id, last_seen))
            except (RedisError, OSError):
                self._pending_leaves.extend(pending[index:])
                raise
        return offline

    async def _sweep_all(self) -> tuple[int, list[tuple[str, datetime]]]:
        """Sweep in slices of SWEEP_SLICE (each one short in Redis) until none is full:
        a dead instance's ten thousand users all go offline within this tick, not one
        slice per tick."""
        removed, offline = 0, []
        for _ in range(MAX_SWEEP_SLICES):
            count, swept = await self._store.sweep(SWEEP_SLICE)
            removed += count
            offline += swept
            if count < SWEEP_SLICE:
                break
        return removed, offline

    async def tick(self) -> None:
        # A connection that stops answering is cut off by the WebSocket protocol's own
        # keepalive (a ping every heartbeat, a timeout of one: app/ws/protocol.py) and
        # leaves through its endpoint; until then it is vouched for like any other.
        pairs = [(conn.id, conn.user_id) for conn in self._fanout.connections.values()]
        offline = await self._settle_pending_leaves()
        came = await self._store.refresh(pairs)
        # A connection that closed while the refresh was on its way was just put back:
        # take it out again, and say nothing of its user coming online. Its leave, which
        # reports the user going offline, may not have reached Redis yet: then this
        # disconnect is the one that takes the user offline, and the leave will find
        # nothing to report, so the offline is this tick's to announce. Unless the
        # refresh itself had just put the user back online (the leave came first and
        # reported it): then this only undoes the refresh.
        local = self._fanout.connections
        for connection_id, user_id in pairs:
            if connection_id not in local:
                went = await self._store.disconnect(user_id, connection_id)
                if went and user_id not in came:
                    offline.append((user_id, datetime.now(UTC)))
        still_here = {user for connection_id, user in pairs if connection_id in local}
        came = [user for user in came if user in still_here]
        removed, swept = await self._sweep_all()
        offline += swept
        self._metrics.sweeps.inc()
        self._metrics.dead_connections.inc(removed)
        if came or offline:
            async with self._work() as work:
                if came:
                    await presence.announce_online(work, came)
                if offline:
                    await presence.record_offline(work, offline)
