"""Presence as users see it: online from the live-connection registry, last seen from
PostgreSQL, and only for users who share a room with the viewer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from app import schemas
from app.domain.events import PresenceChanged
from app.domain.lanes import Lanes, Turn
from app.domain.ports import (
    Actor,
    BatchWorkFactory,
    PresenceReader,
    PresenceSnapshot,
    PresenceStore,
    Work,
)
from app.domain.pushes import iso_utc
from app.errors import ChatError, Forbidden, RateLimited, ValidationFailed
from app.infra.db.queries import batched, users
from app.infra.failures import store_down

MAX_WATCHED = 500
ROWS_PER_READ = 1000


async def visible_to(work: Work, actor: Actor, user_ids: Sequence[str]) -> set[str]:
    """The subset of user_ids the actor may see: themselves and anyone sharing a room."""
    others = {u for u in user_ids if u != actor.user_id}
    shared = await users.sharing_a_room(work.session, actor.user_id, others) if others else set()
    return shared | ({actor.user_id} & set(user_ids))


@dataclass(frozen=True, slots=True)
class PresenceQuery:
    """One request for the presence of some users (a `presence.watch`, a REST read)."""

    actor: Actor
    user_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresenceView:
    """Some users' presence as a viewer may see it, and the presence version of the
    registry each state was read at (none for a user with no version: never online, or
    not for a day)."""

    states: list[schemas.Presence]
    versions: dict[str, int]


def _wanted(query: PresenceQuery) -> list[str]:
    wanted = list(dict.fromkeys(query.user_ids))
    if len(wanted) > MAX_WATCHED:
        raise ValidationFailed(f"at most {MAX_WATCHED} users at once")
    return wanted


async def presence_of_many(
    work: BatchWorkFactory, presence: PresenceReader, queries: list[PresenceQuery]
) -> list[PresenceView | ChatError]:
    """Presence of each query's users, every query of the batch in one statement; a query
    is refused as a whole if any one of its users shares no room with its actor."""
    wanted: list[list[str] | ChatError] = []
    pairs: list[tuple[str, str]] = []
    for query in queries:
        try:
            ids = _wanted(query)
        except ChatError as exc:
            wanted.append(exc)
            continue
        wanted.append(ids)
        pairs += [(query.actor.user_id, user_id) for user_id in ids]
    # The statement, then Redis once the connection is back in the pool.
    async with work() as batch:
        rows = iter(await batched.presence_rows(batch.db, pairs))
    now = await presence.snapshot({user_id for _, user_id in pairs}) if pairs else None
    answers: list[PresenceView | ChatError] = []
    for asked in wanted:
        if isinstance(asked, ChatError):
            answers.append(asked)
            continue
        seen = [next(rows) for _ in asked]
        if not all(visible for visible, _ in seen):
            answers.append(Forbidden("presence is shown only for users who share a room with you"))
            continue
        assert now is not None  # a query that asked for someone
        states = [
            schemas.Presence(user_id=user_id, online=user_id in now.online, last_seen=last_seen)
            for user_id, (_, last_seen) in zip(asked, seen, strict=True)
        ]
        versions = {u: now.versions[u] for u in asked if u in now.versions}
        answers.append(PresenceView(states, versions))
    return answers


class PresenceReads:
    """Presence requests answered in batches by lanes, like the writes.

    Thousands of sockets opening at once each ask for their room-mates' presence; one
    transaction apiece had them queue for pooled connections until they timed out
    (`UNAVAILABLE`). A batch of up to a lane's size is one statement and one Redis call.
    """

    def __init__(self, work: BatchWorkFactory, presence: PresenceReader) -> None:
        self._work = work
        self._presence = presence
        self._lanes: Lanes[PresenceQuery, PresenceView] = Lanes("presence", self._apply)

    def start(self) -> None:
        self._lanes.start()

    async def stop(self) -> None:
        await self._lanes.stop()

    async def read(self, actor: Actor, user_ids: Sequence[str]) -> PresenceView:
        return await self._lanes.submit(actor.user_id, PresenceQuery(actor, tuple(user_ids)))

    async def watch(
        self,
        actor: Actor,
        user_ids: Sequence[str],
        follow: Callable[[Sequence[str]], Awaitable[None]],
        before: Sequence[str],
    ) -> PresenceView:
        """The presence of users a connection starts to follow, exact as of the answer.

        `follow` subscribes the connection to the users' reports, and returns once Redis
        has the subscription; only then are they read, so a transition is either in the
        read or reported after it, never lost in between. The reports wait until the
        answer is out, and those it already covers are dropped (`app.ws.holds`), which
        also keeps anything about a user the read refuses (one who shares no room with
        the actor) from reaching the connection: it then follows `before` again."""
        await follow(user_ids)
        try:
            return await self.read(actor, user_ids)
        except Exception:
            await follow(before)
            raise

    async def _apply(
        self, batch: list[PresenceQuery], turn: Turn
    ) -> list[PresenceView | ChatError]:
        # Reads: nothing to answer in order, and no statement worth starting early.
        return await presence_of_many(self._work, self._presence, batch)


async def now(
    store: PresenceStore, user_ids: Sequence[str], *, assumed_online: bool
) -> PresenceSnapshot:
    """The registry's state of these users now, to report it at. If Redis cannot be read,
    each is taken to be `assumed_online`, unversioned (watchers take such a report
    whatever they had before, as they did before reports had versions)."""
    try:
        return await store.snapshot(user_ids)
    except Exception as exc:
        if not store_down(exc):
            raise
        return PresenceSnapshot(frozenset(user_ids) if assumed_online else frozenset(), {})


def _frame(
    user_id: str, online: bool, last_seen: datetime | None, now: PresenceSnapshot
) -> PresenceChanged:
    frame = {
        "type": "presence",
        "user_id": user_id,
        "online": online,
        "last_seen": iso_utc(last_seen) if last_seen else None,
    }
    return PresenceChanged(user_id, frame, now.versions.get(user_id))


async def announce_online(work: Work, user_ids: Sequence[str], now: PresenceSnapshot) -> None:
    """Tell watchers these users came online (with the last seen they had until now): those
    the registry still has online `now`."""
    rows = {row["id"]: row for row in await users.get_users(work.session, user_ids)}
    for user_id in user_ids:
        if user_id not in now.online:
            continue  # gone again: whatever took them offline reports that
        row = rows.get(user_id)
        work.log.emit(_frame(user_id, True, row["last_seen_at"] if row else None, now))


async def record_offline(
    work: Work, offline: Sequence[tuple[str, datetime]], now: PresenceSnapshot
) -> None:
    """Keep each user's last seen in PostgreSQL (it outlives Redis), and tell watchers of
    those the registry still has offline `now` (one back meanwhile is reported by
    whatever brought them back)."""
    for user_id, last_seen in offline:
        await users.set_last_seen(work.session, user_id, last_seen)
        if user_id not in now.online:
            work.log.emit(_frame(user_id, False, last_seen, now))


async def settle(
    work: Work, came: Collection[str], went: Mapping[str, datetime], now: PresenceSnapshot
) -> None:
    """Settle what a heartbeat found: users that came online, users that went offline (with
    their last seen), and the registry's state of all of them `now`.

    Every last seen is kept (the store keeps the latest). Watchers are told each user's
    state as it is now, once: a user found both going and coming (a leave settled late,
    a reconnect on this or another instance) is not told offline after, or instead of,
    being online.
    """
    # In one order on every instance, so two ticks writing the same users cannot deadlock.
    await record_offline(work, sorted(went.items()), now)
    back = sorted(user_id for user_id in came if user_id in now.online)
    # Read in slices: one IN list of every user a Redis restart brought back could pass
    # the driver's 32767 parameters, and a heartbeat retries a failed settle every tick.
    for start in range(0, len(back), ROWS_PER_READ):
        await announce_online(work, back[start : start + ROWS_PER_READ], now)


async def join(store: PresenceStore, user_id: str, connection_id: str, limit: int) -> bool:
    """Register a new connection; True when the user just came online.

    Refused with RATE_LIMITED when the user already has `limit` live connections.
    """
    admitted = await store.connect(user_id, connection_id, limit)
    if admitted < 0:
        raise RateLimited(f"at most {limit} connections per user")
    return admitted == 1


async def leave(store: PresenceStore, user_id: str, connection_id: str) -> bool:
    """Unregister a connection that ended; True when the user just went offline."""
    return await store.disconnect(user_id, connection_id)
