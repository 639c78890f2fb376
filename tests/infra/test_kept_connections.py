"""The lanes keep their connections between batches, and never keep a broken one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.infra.db import direct
from tests.support import Stores


def _with(
    stores: Stores, body: Callable[[AsyncEngine, direct.KeptConnections], Awaitable[None]]
) -> None:
    async def run() -> None:
        engine = create_async_engine(stores.database_url, pool_size=2, max_overflow=0)
        kept = direct.KeptConnections(engine)
        try:
            await body(engine, kept)
        finally:
            await kept.close()
            await engine.dispose()

    asyncio.run(run())


async def _backend(kept: direct.KeptConnections) -> int:
    async with direct.autocommit(kept) as db:
        pid: int = await db.fetchval("SELECT pg_backend_pid()")
        return pid


def test_the_next_batch_runs_on_the_connection_the_last_one_kept(stores: Stores) -> None:
    async def body(engine: AsyncEngine, kept: direct.KeptConnections) -> None:
        first = await _backend(kept)
        async with direct.transaction(kept) as db:
            assert await db.fetchval("SELECT pg_backend_pid()") == first
        assert await _backend(kept) == first

    _with(stores, body)


def test_a_refused_statement_leaves_its_connection_kept(stores: Stores) -> None:
    async def body(engine: AsyncEngine, kept: direct.KeptConnections) -> None:
        first = await _backend(kept)
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with direct.autocommit(kept) as db:
                await db.fetchval("SELECT 1 / 0")
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with direct.transaction(kept) as db:
                await db.fetchval("SELECT 1 / 0")
        assert await _backend(kept) == first

    _with(stores, body)


def test_a_connection_postgresql_ended_is_replaced_before_the_batch_runs(
    stores: Stores,
) -> None:
    async def body(engine: AsyncEngine, kept: direct.KeptConnections) -> None:
        first = await _backend(kept)
        admin = await asyncpg.connect(stores.database_url.replace("+asyncpg", ""))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # asyncpg notices the socket closing
        async with direct.transaction(kept) as db:
            assert await db.fetchval("SELECT pg_backend_pid()") != first

    _with(stores, body)


def test_a_cancelled_batch_does_not_keep_its_connection(stores: Stores) -> None:
    async def body(engine: AsyncEngine, kept: direct.KeptConnections) -> None:
        first = await _backend(kept)

        async def slow() -> None:
            async with direct.autocommit(kept) as db:
                await db.execute("SELECT pg_sleep(5)")

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        assert await _backend(kept) != first

    _with(stores, body)


def test_closing_returns_every_kept_connection_to_the_pool(stores: Stores) -> None:
    async def body(engine: AsyncEngine, kept: direct.KeptConnections) -> None:
        async def hold() -> None:
            async with direct.autocommit(kept) as db:
                await db.execute("SELECT pg_sleep(0.2)")

        await asyncio.gather(hold(), hold())
        assert engine.sync_engine.pool.checkedout() == 2  # type: ignore[attr-defined]
        await kept.close()
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    _with(stores, body)
