"""Transactions for the write lanes, run on the driver connection itself.

The lanes run a few fixed statements thousands of times a second. Through the ORM
session each call costs tens of microseconds of Python (cache keys, parameter
processing, result rows) on the event loop's one thread; asyncpg prepares each statement
once per connection and then runs it for a few. The connections still come from a
SQLAlchemy pool, so sizes, timeouts and invalidation work as for every other query.
That pool belongs to the lanes alone: requests never wait behind batches, nor batches
behind requests, it checks out without a pre-ping (three round trips per batch), and
the lanes keep their connections between batches (`KeptConnections`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# Raised at once by a connection whose server went away while it sat idle in the pool.
# (Not a timeout: a server that stops answering would make a retry wait as long again.)
STALE = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError)
# Whatever leaves a connection unusable, or in an unknown state: it is not pooled again.
BROKEN = (*STALE, asyncpg.PostgresConnectionError, OSError)


class KeptConnections:
    """The lanes' connections, kept between batches rather than returned to the pool.

    A checkout and check-in through SQLAlchemy's async pool cost about 55 µs of the
    event loop's thread (greenlet hand-offs, pool events, the reset on return), and the
    lanes run hundreds of batches a second. A kept connection is taken back at the cost
    of a list pop. There are never more kept than lanes ran at once, which the pool is
    sized for; a connection that failed is invalidated and never kept.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._idle: list[AsyncConnection] = []
        self._closed = False

    @property
    def has_idle(self) -> bool:
        return bool(self._idle)

    async def take(self) -> AsyncConnection:
        return self._idle.pop() if self._idle else await self._engine.connect()

    async def keep(self, conn: AsyncConnection) -> None:
        if self._closed:
            await conn.close()
        else:
            self._idle.append(conn)

    async def close(self) -> None:
        """Back to the pool, so that disposing of the engine closes them."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


async def _checkout(kept: KeptConnections, *, begin: bool) -> tuple[AsyncConnection, Any, Any]:
    """A connection, with a transaction open if `begin`. A stale one (PostgreSQL
    restarted since it was last used) is dropped and replaced, before anything ran on
    it: without a transaction to begin, by asyncpg's own record of its socket closing.
    Every kept connection may be stale after a restart, and then one fresh from the pool
    follows them."""
    while True:
        fresh = not kept.has_idle
        conn = await kept.take()
        try:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None  # a checked-out connection always has one
            if not begin:
                if driver.is_closed():
                    raise asyncpg.ConnectionDoesNotExistError("closed while idle")
                return conn, driver, None
            tx = driver.transaction()
            await tx.start()
        except STALE as exc:
            await conn.invalidate(exc)
            await conn.close()
            if fresh:
                raise
            continue
        except BaseException as exc:
            if isinstance(exc, BROKEN):
                await conn.invalidate(exc)
            await conn.close()
            raise
        return conn, driver, tx


@asynccontextmanager
async def transaction(kept: KeptConnections) -> AsyncIterator[Any]:
    """Yield an asyncpg connection inside a transaction: committed when the block ends,
    rolled back when it raises."""
    conn, driver, tx = await _checkout(kept, begin=True)
    try:
        yield driver
    except (*BROKEN, asyncio.CancelledError) as exc:
        # Not rolled back: a connection that stopped answering would hold this batch
        # for another timeout, and a cancelled one may be mid-statement. Invalidating it
        # aborts it, and PostgreSQL rolls back.
        await _discard(conn, exc)
        raise
    except BaseException:
        try:
            await tx.rollback()
        except BaseException as exc:
            await _discard(conn, exc)
            raise
        await kept.keep(conn)
        raise
    try:
        await tx.commit()
    except BaseException as exc:
        await _discard(conn, exc)
        raise
    await kept.keep(conn)


@asynccontextmanager
async def autocommit(kept: KeptConnections) -> AsyncIterator[Any]:
    """Yield an asyncpg connection outside any transaction: each statement commits on
    its own. For a batch that is a single statement, this saves the round trips (and
    the server's work) of BEGIN and COMMIT."""
    conn, driver, _ = await _checkout(kept, begin=False)
    try:
        yield driver
    except (*BROKEN, asyncio.CancelledError) as exc:
        await _discard(conn, exc)
        raise
    except BaseException:
        # A refused statement (a key already taken, say) leaves the connection usable.
        await kept.keep(conn)
        raise
    await kept.keep(conn)


async def _discard(conn: AsyncConnection, exc: BaseException) -> None:
    """A connection in an unknown state: invalidated (aborting whatever it ran) and not
    kept."""
    await conn.invalidate(exc if isinstance(exc, Exception) else None)
    await conn.close()
