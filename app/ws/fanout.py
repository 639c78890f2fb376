"""Fan-out on one instance: events to the local sockets they concern, and over the bus.

Committed events are delivered to local sockets first, then published once per channel
for the other instances (a channel only this instance follows is not published at all;
an echo that does arrive is ignored). Which sockets an event concerns, and which
channels this instance follows, is the `LocalRegistry`'s to know. A frame is serialized
once and the same text is queued for every socket that gets it. A room's new messages,
from here or from the bus, go out in `seq` order (`RoomOrder`).

What is pushed to a connection being set up (until its `hello`), and the presence
reports for a connection whose `presence.watch` is being answered, are kept back until
that has gone out (`app.ws.holds`).

Advisory events (typing) are dropped, not delivered or published, while this instance's
event loop is behind; on arrival from the bus, likewise. Chat then keeps its latency
through a typing storm, and typists are shown again by their next refresh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from typing import Any

import orjson
import structlog

from app.domain.events import Event, MembershipChanged, PresenceChanged, RoomMessage, UserFrame
from app.infra.bus import channels, envelope
from app.infra.bus.redis import RedisBus
from app.infra.loop_lag import LoopLag
from app.infra.metrics import Metrics
from app.ws.connection import Connection
from app.ws.holds import PresenceHolds, SetupHolds
from app.ws.protocol import text_frame
from app.ws.registry import LocalRegistry
from app.ws.room_order import RoomOrder

log = structlog.get_logger(__name__)

RESYNC = orjson.dumps({"type": "resync"})
RECHECK_WAIT_S = 1.0
# A room push: the room, the frame's JSON, and who is skipped (a connection, a user).
_RoomPush = tuple[str, bytes, str | None, str | None]


class Fanout:
    def __init__(
        self,
        bus: RedisBus,
        instance_id: str,
        metrics: Metrics,
        loop_lag: LoopLag,
        *,
        order_hold_s: float,
    ) -> None:
        self._bus = bus
        self._loop_lag = loop_lag
        self._instance_id = instance_id
        self._metrics = metrics
        self._setup_holds = SetupHolds()
        self._presence_holds = PresenceHolds()
        # A room's new messages waiting for an earlier one (see `app.ws.room_order`).
        self._order: RoomOrder[_RoomPush] = RoomOrder(
            order_hold_s, self._release, metrics.messages_held.inc
        )
        self._registry = LocalRegistry(bus, metrics, self._order.forget)
        # Set once the services exist: re-checks what connections may watch.
        self.recheck_watches: Callable[[list[Connection]], Coroutine[Any, Any, None]] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- the local registry (`app.ws.registry`) ------------------------------------

    @property
    def connections(self) -> dict[str, Connection]:
        return self._registry.connections

    async def add(self, conn: Connection, room_ids: Iterable[str], *, held: bool = False) -> None:
        """Deliver to `conn` what concerns its user and `room_ids`; with `held`, keep it
        until `release` instead of pushing it."""
        if held:
            self._setup_holds.hold(conn)
        await self._registry.add(conn, room_ids)

    def release(self, conn: Connection, first: Sequence[str]) -> None:
        """Push `first` (a `hello`), then what was held for `conn`; from now on pushes go
        to it directly. One synchronous step, so no push can come between."""
        held = self._setup_holds.release(conn)
        for text in first:
            conn.push(text)
        for text, wire in held:
            conn.push(text, wire)

    async def remove(self, conn: Connection) -> None:
        self._setup_holds.release(conn)
        self._presence_holds.drop(conn)
        await self._registry.remove(conn)

    def of_user(self, user_id: str) -> set[Connection]:
        return self._registry.of_user(user_id)

    async def watch(self, conn: Connection, user_ids: Iterable[str]) -> None:
        """Replace the set of users whose presence `conn` follows; returns once their
        reports reach this instance."""
        wanted = set(user_ids)
        await self._registry.watch(conn, wanted)
        await self._bus.until_subscribed(channels.watch(u) for u in wanted)

    def hold_presence(self, conn: Connection) -> None:
        """Keep presence reports for `conn` back until `release_presence`."""
        self._presence_holds.hold(conn)

    def release_presence(self, conn: Connection, answered: Mapping[str, int] | None) -> None:
        """Push the reports kept for `conn` newer than the versions its answer gave."""
        for data in self._presence_holds.release(conn, answered):
            self._push([conn], data, count=False)

    async def follow(self, conn: Connection, room_ids: Iterable[str]) -> None:
        await self._registry.follow(conn, room_ids)

    # ---- publishing (the domain's EventPublisher) ------------------------------------

    async def publish(self, events: Iterable[Event], *, wait: bool = True) -> None:
        """Deliver to the local sockets at once; publish for the other instances, waiting
        for Redis only with `wait` (see `RedisBus.publish`)."""
        outgoing: list[tuple[str, bytes]] = []
        header: dict[str, Any]
        for event in events:
            match event:
                case RoomMessage(room_id, frame, skip_connection, skip_user, advisory, seq):
                    if advisory and self._shed():
                        continue
                    data = orjson.dumps(frame)
                    self._to_room_in_order(room_id, seq, data, skip_connection, skip_user)
                    header = {
                        "o": self._instance_id,
                        "s": skip_connection,
                        "u": skip_user,
                        "t": time.time(),
                    }
                    if advisory:
                        header["a"] = 1
                    if seq is not None:
                        header["q"] = seq
                    outgoing.append((channels.room(room_id), envelope.encode(header, data)))
                case UserFrame(user_ids, frame, skip_connections):
                    data = orjson.dumps(frame)
                    header = {"o": self._instance_id, "s": skip_connections}
                    packed = envelope.encode(header, data)
                    for user_id in user_ids:
                        self._to_user(user_id, data, skip_connections)
                        outgoing.append((channels.user(user_id), packed))
                case PresenceChanged(user_id, frame, version):
                    data = orjson.dumps(frame)
                    self._to_watchers(user_id, data, version)
                    header = {"o": self._instance_id}
                    if version is not None:
                        header["v"] = version
                    outgoing.append((channels.watch(user_id), envelope.encode(header, data)))
                case MembershipChanged(room_id, user_id, change):
                    await self._membership(room_id, user_id, change)
                    membership = {"room_id": room_id, "change": change}
                    header = {"o": self._instance_id, "m": membership}
                    outgoing.append((channels.user(user_id), envelope.encode(header)))
                    if change == "removed":
                        # Whoever watches this user may no longer share a room with them:
                        # settled before the room hears of the removal (the next event).
                        await self._recheck_first(self._registry.watchers_of(user_id))
                        outgoing.append((channels.watch(user_id), envelope.encode(header)))
        await self._bus.publish(outgoing, wait=wait)

    # ---- delivery --------------------------------------------------------------------

    # Each takes the frame's JSON once and hands every socket the same text and the same
    # encoded WebSocket frame.

    def _to_room_in_order(
        self,
        room_id: str,
        seq: int | None,
        data: bytes,
        skip_connection: str | None,
        skip_user: str | None,
    ) -> None:
        self._order.arrive(room_id, seq, (room_id, data, skip_connection, skip_user))

    def _release(self, push: _RoomPush) -> None:
        self._to_room(*push)

    def _to_room(
        self, room_id: str, data: bytes, skip_connection: str | None, skip_user: str | None
    ) -> None:
        conns = [
            c
            for c in self._registry.in_room(room_id)
            if c.id != skip_connection and c.user_id != skip_user
        ]
        self._push(conns, data)

    def _to_user(self, user_id: str, data: bytes, skip: Collection[str | None]) -> None:
        self._push([c for c in self._registry.of_user(user_id) if c.id not in skip], data)

    def _to_watchers(self, user_id: str, data: bytes, version: int | None) -> None:
        if self._registry.newer_presence(user_id, version):
            watchers = self._registry.watchers_of(user_id)
            now = self._presence_holds.keep(watchers, user_id, version, data)
            self._push(now, data, count=False)

    def _push(self, conns: list[Connection], data: bytes, *, count: bool = True) -> None:
        if not conns:
            return
        text, wire = data.decode(), text_frame(data)
        if count:
            self._metrics.frames_fanned_out.inc(len(conns))
        if self._setup_holds:
            conns = self._setup_holds.keep(conns, text, wire)
        for conn in conns:
            conn.push(text, wire)

    async def _membership(self, room_id: str, user_id: str, change: str) -> None:
        conns = await self._registry.membership(room_id, user_id, change)
        if conns and change != "added":
            # Those the removed user watches may no longer share a room with them.
            await self._recheck_first(conns)

    def _shed(self) -> bool:
        """Whether an advisory event is dropped now (and counted as such)."""
        if self._loop_lag.behind:
            self._metrics.frames_shed.inc()
            return True
        return False

    async def _recheck_first(self, conns: Iterable[Connection]) -> None:
        """Re-check which of their watched users `conns` may still see (presence is shown
        only to users who share a room, and rooms change) before what follows is delivered
        (a `member_removed` comes next). Waited for within a bound, so that a slow database
        cannot hold up everything behind it; past it, the re-check finishes on its own."""
        watching = [c for c in conns if c.watching]
        if not watching or self.recheck_watches is None:
            return
        task = asyncio.create_task(self.recheck_watches(watching))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({task}, timeout=RECHECK_WAIT_S)

    async def on_bus_message(self, channel: str, data: bytes) -> None:
        """A frame from another instance: deliver it to the local sockets it concerns."""
        try:
            header, frame = envelope.decode(data)
        except ValueError:
            log.warning("bus_message_unreadable", channel=channel)
            return
        if header.get("o") == self._instance_id or (header.get("a") and self._shed()):
            return
        kind, _, key = channel.removeprefix(channels.PREFIX + ":").partition(":")
        skip = header.get("s")
        if isinstance(header.get("t"), float):
            # Publish on one instance to delivery on this one: the bus's share of latency.
            self._metrics.fanout_latency.observe(max(0.0, time.time() - header["t"]))
        if kind == "room":
            seq = header.get("q")
            seq = seq if type(seq) is int else None  # from an instance that sends none
            self._to_room_in_order(key, seq, frame, skip, header.get("u"))
        elif kind == "watch":
            if "m" in header:
                await self._recheck_first(self._registry.watchers_of(key))
            else:
                version = header.get("v")
                self._to_watchers(key, frame, version if type(version) is int else None)
        elif kind == "user":
            if "m" in header:
                await self._membership(header["m"]["room_id"], key, header["m"]["change"])
            else:
                # A list; a single id (or none) from an instance that predates lists.
                self._to_user(key, frame, skip if isinstance(skip, list) else (skip,))
        elif channel == channels.RESYNC:
            # Another instance dropped publishes while Redis was away: what our clients
            # missed is in PostgreSQL, and `sync` replays it.
            await self.on_bus_reconnect()

    async def on_bus_reconnect(self) -> None:
        """Pushes published while the subscription was down are lost: every local client
        is told to `sync`, which replays them from PostgreSQL. The presence versions seen
        are forgotten: a Redis that restarted may have lost them."""
        self._registry.forget_presence_versions()
        self._push(list(self.connections.values()), RESYNC, count=False)

    async def drain(self, code: int, reason: str, timeout_s: float) -> None:
        """Close every local socket once the frame it is handling has been answered."""
        conns = list(self.connections.values())
        for conn in conns:
            conn.draining = True

        async def close(conn: Connection) -> None:
            await conn.wait_idle()
            conn.close(code, reason)
            await conn.closed.wait()

        if conns:
            await asyncio.wait([asyncio.create_task(close(c)) for c in conns], timeout=timeout_s)
