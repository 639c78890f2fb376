"""A database of its own for tests that migrate down or hold locks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from tests.support import Stores


def _admin(url: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def scratch_database(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of its own, so migrating down cannot disturb other tests."""
    name = f"migrations_{uuid.uuid4().hex[:10]}"
    _admin(stores.database_url, f'CREATE DATABASE "{name}"')
    url = stores.database_url.rsplit("/", 1)[0] + f"/{name}"
    monkeypatch.setenv("CHAT_DATABASE_URL", url)
    yield url
    _admin(stores.database_url, f'DROP DATABASE "{name}" WITH (FORCE)')
