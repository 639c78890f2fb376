"""Real servers, real processes: these start PostgreSQL and Redis from the pip binaries."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from app.infra.embedded import EmbeddedPostgres, EmbeddedRedis

pytestmark = pytest.mark.timeout(120)


def _gone(pid: int) -> bool:
    # Orphaned daemons are reparented to PID 1, which may never reap them: a zombie is gone too.
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(_dsn(url), timeout=10)
        try:
            return [tuple(row) for row in await conn.fetch(statement)]
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def rds(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path)
    yield server
    server.stop()


def test_postgres_data_survives_stop_and_start(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    url = pg.start()
    assert url.startswith("postgresql+asyncpg://postgres@127.0.0.1:")
    assert url.endswith("/chat")
    assert pg.url == url
    assert (tmp_path / "postgres" / "PG_VERSION").exists()
    _sql(url, "CREATE TABLE note (id int PRIMARY KEY, body text)")
    _sql(url, "INSERT INTO note VALUES (1, 'hello')")
    assert _sql(url, "SHOW fsync") == [("on",)]
    assert _sql(url, "SHOW max_connections") == [("200",)]
    assert _sql(url, "SHOW listen_addresses") == [("127.0.0.1",)]

    first_pid = pg.pid
    assert first_pid is not None
    pg.stop()
    assert pg.pid is None
    assert _gone(first_pid)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    pg.stop()  # idempotent

    assert pg.start() == url, "the remembered port is reused"
    assert pg.pid != first_pid
    assert _sql(url, "SELECT id, body FROM note") == [(1, "hello")]


def test_postgres_kill_then_recover(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    url = pg.start()
    _sql(url, "CREATE TABLE t (v int)")
    _sql(url, "INSERT INTO t VALUES (42)")
    pid = pg.pid
    assert pid is not None
    pg.kill()
    assert _gone(pid)
    assert pg.pid is None
    # The lock file the killed postmaster left must not block the next start.
    assert (tmp_path / "postgres" / "postmaster.pid").exists()

    assert pg.start() == url
    assert _sql(url, "SELECT v FROM t") == [(42,)], "committed data survives a crash"


def test_postgres_reuses_running_postmaster(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    url = pg.start()
    second = EmbeddedPostgres(tmp_path)
    assert second.start() == url
    assert second.pid == pg.pid
    pid = pg.pid
    assert pid is not None
    second.stop()
    assert _gone(pid)


def test_postgres_long_data_dir_uses_short_socket_dir(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = EmbeddedPostgres(deep, database="other_db")
    try:
        url = server.start()
        assert url.endswith("/other_db")
        assert _sql(url, "SELECT current_database()") == [("other_db",)]
        sockets = _sql(url, "SHOW unix_socket_directories")[0][0]
        assert isinstance(sockets, str)
        assert not sockets.startswith(str(deep))
    finally:
        server.stop()


def test_postgres_rejects_unsafe_database_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported database name"):
        EmbeddedPostgres(tmp_path, database='x"; DROP')


def test_postgres_url_before_start_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="only valid after start"):
        _ = EmbeddedPostgres(tmp_path).url


def test_redis_ping_stop_restart(rds: EmbeddedRedis) -> None:
    url = rds.start()
    assert url.startswith("redis://127.0.0.1:")
    assert url.endswith("/0")
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        assert client.ping() is True
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()

    pid = rds.pid
    assert pid is not None
    rds.stop()
    assert rds.pid is None
    assert _gone(pid)
    rds.stop()  # idempotent

    assert rds.start() == url, "the remembered port is reused"
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_redis_kill(rds: EmbeddedRedis) -> None:
    rds.start()
    pid = rds.pid
    assert pid is not None
    rds.kill()
    assert _gone(pid)
    assert rds.pid is None
    rds.start()  # a leftover pidfile from the kill does not get in the way
    assert rds.pid is not None
    assert rds.pid != pid


def test_redis_moves_off_a_taken_remembered_port(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    port = int(first.start().rsplit(":", 1)[1].split("/")[0])
    first.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        second = EmbeddedRedis(tmp_path)
        try:
            url = second.start()
            assert f":{port}/" not in url
        finally:
            second.stop()
