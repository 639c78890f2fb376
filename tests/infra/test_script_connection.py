"""The publish script's own connection: it answers what the script returns, survives a
Redis that forgot the script, and gives up on a silent Redis within its bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from app.infra.bus.script_connection import ScriptConnection
from app.infra.redis_client import make_redis
from tests.faults.proxy import FaultProxy, target_of
from tests.support import Stores

ECHO = "return {ARGV[1], tonumber(ARGV[2]) + 1}"
TIMEOUT_S = 0.5


@pytest.fixture
def proxy(stores: Stores) -> Iterator[FaultProxy]:
    with FaultProxy(*target_of(stores.redis_url), name="redis-script") as proxy:
        yield proxy


@pytest.fixture
async def script(proxy: FaultProxy, stores: Stores) -> AsyncIterator[ScriptConnection]:
    client = make_redis(proxy.url_for(stores.redis_url), health_check_interval_s=30)
    script = ScriptConnection(client, ECHO, TIMEOUT_S)
    yield script
    await script.close()
    await client.aclose()


async def test_a_call_answers_what_the_script_returns(script: ScriptConnection) -> None:
    assert await script.run(["first", 41]) == [b"first", 42]


async def test_a_script_redis_has_forgotten_is_loaded_again(
    script: ScriptConnection, redis: Redis
) -> None:
    assert await script.run(["before", 1]) == [b"before", 2]
    await redis.script_flush()

    assert await script.run(["after", 1]) == [b"after", 2]


async def test_a_silent_redis_fails_the_call_within_its_bound_and_the_next_call_reconnects(
    script: ScriptConnection, proxy: FaultProxy
) -> None:
    assert await script.run(["warm", 0]) == [b"warm", 1]
    proxy.blackhole()
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(script.run(["lost", 0]), 10 * TIMEOUT_S)
    assert loop.time() - started < 5 * TIMEOUT_S

    proxy.pass_through()
    # The silent link is never read again: an answer now is to a call made afresh.
    assert await asyncio.wait_for(script.run(["again", 0]), 10 * TIMEOUT_S) == [b"again", 1]
