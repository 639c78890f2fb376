"""Presence under failure: instances with a 1 s heartbeat on a Redis of their own.

Each test module gets its own embedded Redis (in a temporary directory, on a fixed port so
a restart keeps the URL valid), so killing or restarting it never disturbs other tests.
PostgreSQL is the shared test database. Every instance a module starts is stopped, or
killed, when the module ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.infra.embedded import EmbeddedRedis
from tests.cluster import Instance, free_port, terminate
from tests.support import Stores

HEARTBEAT_S = 1.0
# The contract: a connection that vanishes is found dead within 3 x heartbeat_s.
DETECTION_S = 3 * HEARTBEAT_S


class PresenceCluster:
    """Instances on the shared PostgreSQL and a dedicated Redis, all torn down together."""

    def __init__(self, stores: Stores, redis: EmbeddedRedis, log_dir: Path) -> None:
        self.stores = stores
        self.redis = redis
        self.log_dir = log_dir
        self.instances: list[Instance] = []

    def launch(self, name: str, **settings: str) -> Instance:
        """Start a `chat serve` with a 1 s heartbeat (plus any extra settings)."""
        instance = Instance(
            name, self.stores, self.log_dir, heartbeat_s=str(HEARTBEAT_S), **settings
        )
        self.instances.append(instance)
        instance.start()
        return instance

    def restart_redis(self) -> None:
        """A crash of Redis (SIGKILL, data lost), then a fresh server on the same port."""
        self.redis.kill()
        self.redis.start()

    def close(self) -> None:
        for instance in self.instances:
            with contextlib.suppress(Exception):
                terminate(instance)


@pytest.fixture(scope="module")
def presence_cluster(
    stores: Stores, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PresenceCluster]:
    data_dir = tmp_path_factory.mktemp("presence")
    redis = EmbeddedRedis(data_dir / "redis-data", port=free_port())
    redis_url = redis.start()
    own = Stores(database_url=stores.database_url, redis_url=redis_url, data_dir=data_dir)
    cluster = PresenceCluster(own, redis, data_dir)
    try:
        yield cluster
    finally:
        cluster.close()
        redis.kill()


@pytest.fixture(scope="module")
def p1(presence_cluster: PresenceCluster) -> Instance:
    return presence_cluster.launch("p1")


@pytest.fixture(scope="module")
def p2(presence_cluster: PresenceCluster) -> Instance:
    return presence_cluster.launch("p2")
