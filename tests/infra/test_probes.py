"""Readiness probes: a store that answers is ready; one that refuses or stays silent is
not, and is found out within the deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.infra.probes import StoresAnswer, probe_stores
from app.infra.redis_client import make_redis
from tests.cluster import free_port
from tests.support import Stores

DEADLINE_S = 0.5


@pytest.fixture
async def engine(stores: Stores) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(stores.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis(stores: Stores) -> AsyncIterator[Redis]:
    client = make_redis(stores.redis_url, health_check_interval_s=10)
    yield client
    await client.aclose()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_both_stores_answering_is_ready(engine: AsyncEngine, redis: Redis) -> None:
    answer = await probe_stores(engine, redis, DEADLINE_S)

    assert answer == StoresAnswer(postgres=True, redis=True)
    assert answer.all


async def test_a_postgresql_that_refuses_connections_is_not_ready(redis: Redis) -> None:
    refused = create_async_engine(f"postgresql+asyncpg://chat@127.0.0.1:{free_port()}/chat")
    try:
        answer = await probe_stores(refused, redis, DEADLINE_S)
    finally:
        await refused.dispose()

    assert answer == StoresAnswer(postgres=False, redis=True)
    assert not answer.all


async def test_a_silent_redis_is_not_ready_once_the_deadline_passes(
    engine: AsyncEngine, silent_port: int
) -> None:
    silent = Redis(host="127.0.0.1", port=silent_port)
    started = time.monotonic()
    try:
        answer = await probe_stores(engine, silent, DEADLINE_S)
    finally:
        await silent.aclose()

    assert answer == StoresAnswer(postgres=True, redis=False)
    assert time.monotonic() - started < DEADLINE_S + 2.0
