"""The connections one instance holds: by id, by user, by room, and who watches whose presence.

An instance subscribes to a room's or a user's channel, or to a user's presence, only
while one of its connections follows it, so it receives only what its own sockets need.
A channel is subscribed to once its first follower is registered, so that what the
subscription brings finds it there, and unsubscribed once the last one has gone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from app.infra.bus import channels
from app.infra.bus.redis import RedisBus
from app.infra.metrics import Metrics
from app.ws.connection import Connection


def newer_version(version: int | None, than: int | None) -> bool:
    """Whether a presence report at `version` is to be passed on to a watcher who was
    last told the state at `than`: unversioned reports (Redis could not be read) always
    are, as is any report to a watcher told nothing versioned yet."""
    return version is None or than is None or version > than


class LocalRegistry:
    def __init__(self, bus: RedisBus, metrics: Metrics, room_gone: Callable[[str], None]) -> None:
        self._bus = bus
        self._metrics = metrics
        # Told of a room no local connection follows any more, so that what is kept for it
        # elsewhere (its `RoomOrder` state) does not outlive the subscription.
        self._room_gone = room_gone
        self.connections: dict[str, Connection] = {}
        self._by_user: dict[str, set[Connection]] = {}
        self._by_room: dict[str, set[Connection]] = {}
        self._watchers: dict[str, set[Connection]] = {}
        # The version of the last presence report delivered here, per watched user.
        self._presence_versions: dict[str, int] = {}

    async def add(self, conn: Connection, room_ids: Iterable[str]) -> None:
        self.connections[conn.id] = conn
        first = conn.user_id not in self._by_user
        self._by_user.setdefault(conn.user_id, set()).add(conn)
        if first:
            await self._bus.subscribe([channels.user(conn.user_id)])
        await self._follow([conn], room_ids)
        self._count()

    async def remove(self, conn: Connection) -> None:
        if self.connections.pop(conn.id, None) is None:
            return
        await self.watch(conn, [])
        await self._unfollow([conn], list(conn.rooms))
        mine = self._by_user.get(conn.user_id, set())
        mine.discard(conn)
        if not mine:
            self._by_user.pop(conn.user_id, None)
            await self._bus.unsubscribe([channels.user(conn.user_id)])
        self._count()

    def of_user(self, user_id: str) -> set[Connection]:
        return self._by_user.get(user_id, set())

    def in_room(self, room_id: str) -> Collection[Connection]:
        return self._by_room.get(room_id, ())

    def watchers_of(self, user_id: str) -> Collection[Connection]:
        return self._watchers.get(user_id, ())

    async def watch(self, conn: Connection, user_ids: Iterable[str]) -> None:
        """Replace the set of users whose presence `conn` follows."""
        wanted = set(user_ids)
        new_channels, gone_channels = [], []
        for user_id in wanted - conn.watching:
            watchers = self._watchers.setdefault(user_id, set())
            if not watchers:
                new_channels.append(channels.watch(user_id))
            watchers.add(conn)
        for user_id in conn.watching - wanted:
            watchers = self._watchers.get(user_id, set())
            watchers.discard(conn)
            if not watchers:
                self._watchers.pop(user_id, None)
                self._presence_versions.pop(user_id, None)
                gone_channels.append(channels.watch(user_id))
        conn.watching = wanted
        await self._bus.subscribe(new_channels)
        await self._bus.unsubscribe(gone_channels)

    def newer_presence(self, user_id: str, version: int | None) -> bool:
        """Whether a report of the user's presence at `version` is to be delivered: newer
        than the last one delivered here (reports from two instances can cross on the way,
        and an older one must not have the last word), or unversioned."""
        if version is None:
            return True
        if not newer_version(version, self._presence_versions.get(user_id)):
            return False
        if user_id in self._watchers:
            self._presence_versions[user_id] = version
        return True

    def forget_presence_versions(self) -> None:
        self._presence_versions.clear()

    async def follow(self, conn: Connection, room_ids: Iterable[str]) -> None:
        await self._follow([conn], room_ids)

    async def membership(self, room_id: str, user_id: str, change: str) -> list[Connection]:
        """Have the user's local connections follow the room they were `added` to, or
        stop following it; those connections."""
        conns = list(self._by_user.get(user_id, ()))
        if not conns:
            return conns
        if change == "added":
            await self._follow(conns, [room_id])
        else:
            await self._unfollow(conns, [room_id])
        return conns

    async def _follow(self, conns: Iterable[Connection], room_ids: Iterable[str]) -> None:
        new_channels = []
        for room_id in room_ids:
            followers = self._by_room.setdefault(room_id, set())
            if not followers:
                new_channels.append(channels.room(room_id))
            for conn in conns:
                followers.add(conn)
                conn.rooms.add(room_id)
        await self._bus.subscribe(new_channels)

    async def _unfollow(self, conns: Iterable[Connection], room_ids: Iterable[str]) -> None:
        gone = []
        for room_id in room_ids:
            followers = self._by_room.get(room_id, set())
            for conn in conns:
                followers.discard(conn)
                conn.rooms.discard(room_id)
            if not followers:
                self._by_room.pop(room_id, None)
                self._room_gone(room_id)
                gone.append(channels.room(room_id))
        await self._bus.unsubscribe(gone)

    def _count(self) -> None:
        self._metrics.connections.set(len(self.connections))
        self._metrics.local_users.set(len(self._by_user))
