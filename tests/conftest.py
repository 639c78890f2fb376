"""Real stores for every test: embedded PostgreSQL and Redis per test worker, or the servers
named by CHAT_TEST_DATABASE_URL / CHAT_TEST_REDIS_URL. Isolation comes from unique ids."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from app.infra.embedded import EmbeddedPostgres, EmbeddedRedis
from app.infra.logging import configure
from app.main import create_app
from app.settings import Settings
from tests.cluster import Sockets
from tests.support import TEST_SECRET, Api, Stores, new_user_id


def pytest_configure(config: pytest.Config) -> None:
    # The service's own JSON logging: unexpected errors print as one line, not a
    # console traceback with every local variable.
    configure("WARNING")


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    database_url = os.environ.get("CHAT_TEST_DATABASE_URL")
    redis_url = os.environ.get("CHAT_TEST_REDIS_URL")
    data_dir: Path = tmp_path_factory.mktemp("stores")
    postgres = redis = None
    if not database_url:
        postgres = EmbeddedPostgres(data_dir)
        database_url = postgres.start()
    if not redis_url:
        redis = EmbeddedRedis(data_dir)
        redis_url = redis.start()
    try:
        yield Stores(database_url=database_url, redis_url=redis_url, data_dir=data_dir)
    finally:
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop()


@pytest.fixture
async def redis(stores: Stores) -> AsyncIterator[Redis]:
    """A plain client of the test Redis, for tests of the parts built on it."""
    client = Redis.from_url(stores.redis_url)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def settings(stores: Stores) -> Settings:
    return Settings(
        database_url=stores.database_url,
        redis_url=stores.redis_url,
        data_dir=stores.data_dir,
        jwt_secret=TEST_SECRET,
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """One app for the session, its lifespan run for real, reached in-process over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as http:
            yield http


@pytest.fixture
def api(client: httpx.AsyncClient) -> Api:
    return Api(client)


@pytest.fixture
async def sockets() -> AsyncIterator[Sockets]:
    """WebSocket clients a test opens, all closed when it ends."""
    opened = Sockets()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def user_id() -> str:
    return new_user_id()
