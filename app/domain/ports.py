"""What the domain needs from the outside world, as small interfaces."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.events import Event, EventLog


class EventPublisher(Protocol):
    """Delivers committed events to every instance (Redis pub/sub in production)."""

    async def publish(self, events: Iterable[Event], *, wait: bool = True) -> None:
        """Without `wait`, returns once the events are on their way, in order, rather than
        delivered everywhere."""


@dataclass(frozen=True, slots=True)
class PresenceSnapshot:
    """Which of some users are online, read at one instant with each one's presence
    version: a number every online or offline transition of the user raises. Watchers
    drop a report whose version is not above the last they had, so reports that cross
    between instances cannot leave them on an older state."""

    online: frozenset[str]
    versions: dict[str, int]


class PresenceReader(Protocol):
    """Which of these users have a live connection anywhere right now."""

    async def online(self, user_ids: Iterable[str]) -> set[str]: ...

    async def snapshot(self, user_ids: Iterable[str]) -> PresenceSnapshot: ...


class PresenceStore(PresenceReader, Protocol):
    """The registry of live connections across every instance."""

    async def connect(self, user_id: str, connection_id: str, max_connections: int) -> int: ...

    async def disconnect(self, user_id: str, connection_id: str) -> bool: ...


class PresenceRegistry(PresenceStore, Protocol):
    """The same registry as each instance's heartbeat keeps it: vouching for this
    instance's connections, and sweeping out those no instance vouches for any more."""

    async def refresh(self, connections: Sequence[tuple[str, str]]) -> list[str]: ...

    async def sweep(self, limit: int) -> tuple[int, list[tuple[str, datetime]]]: ...


@dataclass(slots=True)
class Work:
    """One unit of work: a transaction, the events it will publish once committed, and the
    connection it came from (so a sender's own socket is answered by its ack, not a push)."""

    session: AsyncSession
    log: EventLog
    connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller. Always from the token, never from a request body."""

    user_id: str
    name: str | None = None
    token_expires_at: datetime | None = None


@dataclass(slots=True)
class BatchWork:
    """A write lane's transaction: the driver connection itself, so its few fixed
    statements run prepared (see `app/infra/db/direct.py`), and the events it will
    publish once committed."""

    db: Any
    log: EventLog


class BatchWorkFactory(Protocol):
    """A batch's unit of work; `in_transaction=False` for a batch that is one statement
    (atomic by itself), which then commits without BEGIN and COMMIT."""

    def __call__(
        self, *, in_transaction: bool = True
    ) -> AbstractAsyncContextManager[BatchWork]: ...
