"""Transactions for the write lanes, run on the driver connection itself.

The lanes run a few fixed statements thousands of times a second. Through the ORM
session each call costs tens of microseconds of Python (cache keys, parameter
processing, result rows) on the event loop's one thread; asyncpg prepares each statement
once per connection and then runs it for a few. The connections still come from a
SQLAlchemy pool, so sizes, timeouts and invalidation work as for every other query.
That pool belongs to the lanes alone: requests never wait behind batches, nor batches
behind requests, and it checks out without a pre-ping (three round trips per batch).
"""

from __future__ import annotations

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


async def _checkout(engine: AsyncEngine, *, begin: bool) -> tuple[AsyncConnection, Any, Any]:
    """A pooled connection, with a transaction open if `begin`. A stale one (PostgreSQL
    restarted since it was pooled) is dropped and replaced once, before anything ran on
    it: without a transaction to begin, by asyncpg's own record of its socket closing."""
    for attempt in range(2):
        conn = await engine.connect()
        try:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None  # a checked-out connection always has one
            if not begin:
                if driver.is_closed():
                    raise asyncpg.ConnectionDoesNotExistError("closed while pooled")
                return conn, driver, None
            tx = driver.transaction()
            await tx.start()
        except STALE as exc:
            await conn.invalidate(exc)
            await conn.close()
            if attempt:
                raise
            continue
        except BaseException as exc:
            if isinstance(exc, BROKEN):
                await conn.invalidate(exc)
            await conn.close()
            raise
        return conn, driver, tx
    raise AssertionError("unreachable")


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[Any]:
    """Yield an asyncpg connection inside a transaction: committed when the block ends,
    rolled back when it raises."""
    conn, driver, tx = await _checkout(engine, begin=True)
    try:
        try:
            yield driver
        except BROKEN as exc:
            # Not rolled back: a connection that stopped answering would hold this batch
            # for another timeout. Invalidating it aborts it, and PostgreSQL rolls back.
            await conn.invalidate(exc)
            raise
        except BaseException:
            try:
                await tx.rollback()
            except BaseException as exc:
                await conn.invalidate(exc if isinstance(exc, Exception) else None)
            raise
        try:
            await tx.commit()
        except BROKEN as exc:
            await conn.invalidate(exc)
            raise
    finally:
        await conn.close()


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[Any]:
    """Yield an asyncpg connection outside any transaction: each statement commits on
    its own. For a batch that is a single statement, this saves the round trips (and
    the server's work) of BEGIN and COMMIT."""
    conn, driver, _ = await _checkout(engine, begin=False)
    try:
        yield driver
    except BROKEN as exc:
        await conn.invalidate(exc)
        raise
    finally:
        await conn.close()
