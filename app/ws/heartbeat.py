"""Each instance's heartbeat: vouch for its live connections in Redis, and sweep.

Every half heartbeat the instance refreshes the registry entries of its connections and
sweeps entries no instance has refreshed for two heartbeats (their instance died or was
cut off), so a dead instance's users go offline within three heartbeats, with the last
time their instance vouched for them as last seen. Sweeping is atomic in Redis, so every
instance can run it at once without a double or a lost offline event. After a time when
no instance could sweep (Redis out of reach of them all) the sweep holds off for a grace
(`sweep.lua`): every entry has lapsed then, the live ones too, until their instances
vouch again.

What a tick finds in Redis (users gone offline, users back online) is kept by the instance
until PostgreSQL has taken it and watchers were told, and is retried on the next tick if
that fails; watchers are told each user's state as the registry has it at the end of the
tick.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

import structlog
from redis.exceptions import RedisError

from app import background
from app.domain import presence
from app.domain.ports import PresenceRegistry, PresenceSnapshot
from app.infra.failures import store_down
from app.infra.metrics import Metrics
from app.work import UnitOfWorkFactory
from app.ws.fanout import Fanout

log = structlog.get_logger(__name__)

# Lapsed connections removed per Redis call, and calls per tick at most (a million).
SWEEP_SLICE = 1000
MAX_SWEEP_SLICES = 1000
# Offline users taken out of Redis but not yet settled in PostgreSQL that an instance keeps
# at most (see `Heartbeat._went`): as many as one tick may sweep, so a healthy tick is
# never held back by it.
MAX_UNSETTLED = SWEEP_SLICE * MAX_SWEEP_SLICES


class Heartbeat:
    def __init__(
        self,
        store: PresenceRegistry,
        fanout: Fanout,
        work: UnitOfWorkFactory,
        metrics: Metrics,
        heartbeat_s: float,
        *,
        max_deferred_leaves: int,
    ) -> None:
        self._store = store
        self._fanout = fanout
        self._work = work
        self._metrics = metrics
        self._interval = heartbeat_s / 2
        # Leaves that could not reach Redis, by connection: (user, last seen). While Redis
        # is down connections are still served, so every one that ends adds one, and a
        # long outage with clients coming and going would grow this without end. Past
        # the bound a leave is not kept, and is made less exact rather than lost: its
        # entry, still in Redis and vouched for by no instance any more, is swept within
        # two heartbeats with the last time this instance vouched for it as last seen (at
        # most half a heartbeat early).
        self._pending_leaves: dict[str, tuple[str, datetime]] = {}
        self._max_pending_leaves = max_deferred_leaves
        # Users Redis has reported offline (a sweep, a leave) whose offline PostgreSQL has
        # not taken yet, with their latest last seen. Redis lists them no more, so if
        # PostgreSQL fails nothing would ever find them again: they are retried from here
        # on every tick until it takes them. Why here and not by removing from Redis only
        # once PostgreSQL accepted: the sweep's atomic removal is what keeps two instances
        # from reporting one offline twice, and deferring it would need a claim on the
        # entries and the claim's expiry, more moving parts for the one case this leaves
        # open (this instance dying while PostgreSQL is down). Bounded: one entry per
        # user, and at MAX_UNSETTLED the sweep waits instead of dropping anything (lapsed
        # connections stay in Redis, where reads already count them offline).
        self._went: dict[str, datetime] = {}
        # Users this instance's refresh brought (back) online, not yet told: the refresh
        # reports each only once, too.
        self._came: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            await background.stop([self._task])

    def offline_later(self, user_id: str, last_seen: datetime) -> None:
        """A leave took its user offline in Redis, but PostgreSQL did not take the last
        seen: a later tick records it, and tells watchers if the user is still away."""
        self._found_offline([(user_id, last_seen)])

    def leave_later(self, user_id: str, connection_id: str, last_seen: datetime) -> None:
        """A connection ended while Redis was unreachable: unregister it on a later tick."""
        full = len(self._pending_leaves) >= self._max_pending_leaves
        if full and connection_id not in self._pending_leaves:
            self._metrics.deferred_leaves_dropped.inc()
            return
        self._pending_leaves[connection_id] = (user_id, last_seen)

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

    def _found_offline(self, found: Iterable[tuple[str, datetime]]) -> None:
        for user_id, last_seen in found:
            before = self._went.get(user_id)
            if before is None or last_seen > before:
                self._went[user_id] = last_seen

    async def _settle_pending_leaves(self) -> None:
        while self._pending_leaves:
            # Forgotten only once Redis has taken it: a failure leaves it for the next tick.
            connection_id, (user_id, last_seen) = next(iter(self._pending_leaves.items()))
            went = await self._store.disconnect(user_id, connection_id)
            if went or not await self._store.online([user_id]):
                self._found_offline([(user_id, last_seen)])
            if self._pending_leaves.get(connection_id) == (user_id, last_seen):
                del self._pending_leaves[connection_id]

    async def _sweep_all(self) -> int:
        """Sweep in slices of SWEEP_SLICE (each one short in Redis) until none is full:
        a dead instance's ten thousand users all go offline within this tick, not one
        slice per tick. Held back while the unsettled backlog is full."""
        removed = 0
        for _ in range(MAX_SWEEP_SLICES):
            if len(self._went) >= MAX_UNSETTLED:
                log.warning("presence_sweep_held_back", unsettled=len(self._went))
                break
            count, swept = await self._store.sweep(SWEEP_SLICE)
            removed += count
            # Kept at once: a later slice or step of this tick may fail.
            self._found_offline(swept)
            if count < SWEEP_SLICE:
                break
        return removed

    async def _settle(self) -> None:
        """Record and tell what this and earlier ticks found; forget it only once done.

        Each user is told in the state the registry has now, not in the order the tick
        found things: a deferred leave settled in the tick whose refresh brings its user
        back, or a reconnect elsewhere meanwhile, must not leave watchers on "offline".
        """
        if not self._came and not self._went:
            return
        came, went = set(self._came), dict(self._went)
        now = await self._store.snapshot(came | went.keys())
        try:
            async with self._work() as work:
                await presence.settle(work, came, went, now)
        except Exception as exc:
            if not store_down(exc):
                # One user's change that PostgreSQL refuses for good would otherwise fail
                # every tick's settle, and every other user's with it.
                log.exception("presence_settle_failed", users=len(came | went.keys()))
                await self._settle_each(came, went, now)
                return
            # Handled here, not in `_run`: a refused PostgreSQL raises an OSError, which
            # would pass there for a Redis failure. Nothing is lost: the next tick retries.
            log.warning(
                "presence_settle_deferred",
                error=type(exc).__name__,
                offline=len(self._went),
                online=len(self._came),
            )
            return
        self._settled(came, went)

    async def _settle_each(
        self, came: set[str], went: dict[str, datetime], now: PresenceSnapshot
    ) -> None:
        """Settle user by user, giving up (logged and counted) only on those PostgreSQL
        refuses for a reason other than an outage; an outage leaves the rest for the
        next tick."""
        for user_id in sorted(came | went.keys()):
            one_came = came & {user_id}
            one_went = {user_id: went[user_id]} if user_id in went else {}
            try:
                async with self._work() as work:
                    await presence.settle(work, one_came, one_went, now)
            except Exception as exc:
                if store_down(exc):
                    return
                log.error("presence_settle_dropped", user_id=user_id, error=type(exc).__name__)
                self._metrics.presence_settles_dropped.inc()
            self._settled(one_came, one_went)

    def _settled(self, came: set[str], went: dict[str, datetime]) -> None:
        """Forget what has been settled (a user found offline again meanwhile, with a
        later last seen, is kept)."""
        self._came -= came
        for user_id, last_seen in went.items():
            if self._went.get(user_id) == last_seen:
                del self._went[user_id]

    async def tick(self) -> None:
        # A connection that stops answering is cut off by the WebSocket protocol's own
        # keepalive (a ping every heartbeat, a timeout of one: app/ws/protocol.py) and
        # leaves through its endpoint; until then it is vouched for like any other.
        pairs = [(conn.id, conn.user_id) for conn in self._fanout.connections.values()]
        await self._settle_pending_leaves()
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
                    self._found_offline([(user_id, datetime.now(UTC))])
        still_here = {user for connection_id, user in pairs if connection_id in local}
        self._came.update(user for user in came if user in still_here)
        removed = await self._sweep_all()
        self._metrics.sweeps.inc()
        self._metrics.dead_connections.inc(removed)
        await self._settle()
