"""Hostile clients: every module starts its own instances, with the limits its tests need,
on the shared test PostgreSQL and Redis, and stops them when it ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import Fleet
from tests.support import Stores


@pytest.fixture(scope="module")
def fleet(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    started = Fleet(stores, tmp_path_factory.mktemp("hostile"))
    try:
        yield started
    finally:
        started.stop()
