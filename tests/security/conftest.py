"""Two real instances on the shared stores (WebSocket cases, and the live server that
Schemathesis drives), plus the sockets a test opens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import Fleet, Instance
from tests.support import Stores


@pytest.fixture(scope="session")
def security_cluster(
    stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Instance]]:
    fleet = Fleet(stores, tmp_path_factory.mktemp("security-cluster"))
    try:
        yield fleet.start(a={}, b={})  # started side by side
    finally:
        fleet.stop()


@pytest.fixture(scope="session")
def a(security_cluster: dict[str, Instance]) -> Instance:
    return security_cluster["a"]


@pytest.fixture(scope="session")
def b(security_cluster: dict[str, Instance]) -> Instance:
    return security_cluster["b"]
