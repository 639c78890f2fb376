"""The unit of work at the edge: one transaction per request or frame, events after commit."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.domain.events import EventLog
from app.domain.ports import BatchWork, EventPublisher, Work
from app.infra.db import direct


@asynccontextmanager
async def unit_of_work(
    sessions: async_sessionmaker[AsyncSession],
    publisher: EventPublisher,
    connection_id: str | None = None,
) -> AsyncIterator[Work]:
    """Commit on success, roll back on error; publish what was emitted only once committed,
    so no client ever hears of a message that PostgreSQL does not hold."""
    async with sessions() as session:
        work = Work(session=session, log=EventLog(), connection_id=connection_id)
        async with session.begin():
            yield work
    if work.log.events:
        await publisher.publish(work.log.events)


@asynccontextmanager
async def batch_of_work(
    connections: direct.KeptConnections, publisher: EventPublisher, *, in_transaction: bool = True
) -> AsyncIterator[BatchWork]:
    """The same promise for a write lane's batch, on the lanes' own connections. Without
    `in_transaction` each statement commits on its own: for a batch that is one."""
    connect = direct.transaction if in_transaction else direct.autocommit
    async with connect(connections) as db:
        work = BatchWork(db=db, log=EventLog())
        yield work
    if work.log.events:
        # Not waiting for Redis: the lane's next batch runs while this one's publish is
        # on its way (the bus keeps them in order), and the callers are answered now.
        await publisher.publish(work.log.events, wait=False)


UnitOfWorkFactory = Callable[[], AbstractAsyncContextManager[Work]]
