"""Two real instances of the service on one PostgreSQL and one Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from tests.cluster import FRAME_TIMEOUT_S, Instance
from tests.support import Stores


@pytest.fixture(scope="session")
def cluster(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Instance]]:
    log_dir = tmp_path_factory.mktemp("cluster")
    instances = [Instance(name, stores, log_dir) for name in ("a", "b")]
    try:
        for instance in instances:
            instance.start()
        yield instances
    finally:
        for instance in instances:
            instance.stop()


@pytest.fixture(scope="session")
def a(cluster: list[Instance]) -> Instance:
    return cluster[0]


@pytest.fixture(scope="session")
def b(cluster: list[Instance]) -> Instance:
    return cluster[1]


@pytest.fixture
async def db(stores: Stores) -> AsyncIterator[Any]:
    """A connection of the test's own to the instances' PostgreSQL: its clock and its locks."""
    dsn = stores.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn, timeout=FRAME_TIMEOUT_S)
    try:
        yield conn
    finally:
        await conn.close()
