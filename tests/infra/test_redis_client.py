"""The shared Redis client: commands packed by hiredis are the bytes redis-py would send,
and Redis takes them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Connection, Redis

from app.infra.redis_client import make_redis
from tests.support import Stores, new_user_id


@pytest.fixture
async def client(stores: Stores) -> AsyncIterator[Redis]:
    redis = make_redis(stores.redis_url, health_check_interval_s=10)
    yield redis
    await redis.aclose()


def test_a_command_is_packed_to_the_same_bytes_as_redis_py_packs_it(client: Redis) -> None:
    pool = client.connection_pool
    packed = pool.make_connection()  # type: ignore[no-untyped-call]
    by_python = Connection(**pool.connection_kwargs)  # redis-py's own, packing in Python
    args = ("CLIENT SETNAME", "x", 7, 2.5, b"\x00\xff", "é" * 5000)

    assert b"".join(packed.pack_command(*args)) == b"".join(by_python.pack_command(*args))


async def test_commands_packed_by_hiredis_are_carried_out(client: Redis) -> None:
    key = new_user_id("packed")
    await client.client_setname("packed")  # a command name of two words

    assert await client.client_getname() == "packed"
    assert await client.set(key, "é\x00" * 3000)
    assert await client.get(key) == ("é\x00" * 3000).encode()
    await client.delete(key)
