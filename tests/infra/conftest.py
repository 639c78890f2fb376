"""A database of its own for tests that migrate down or hold locks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support import Stores, run_sql


@pytest.fixture
def scratch_database(stores: Stores, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A database of its own, so migrating down cannot disturb other tests."""
    name = f"migrations_{uuid.uuid4().hex[:10]}"
    run_sql(stores.database_url, f'CREATE DATABASE "{name}"')
    url = stores.database_url.rsplit("/", 1)[0] + f"/{name}"
    monkeypatch.setenv("CHAT_DATABASE_URL", url)
    yield url
    run_sql(stores.database_url, f'DROP DATABASE "{name}" WITH (FORCE)')
