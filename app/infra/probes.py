"""Whether the stores answer right now: what readiness tells load balancers.

Each probe is a round trip with a deadline. Any failure counts as "not answering",
whatever its kind, because a load balancer needs a yes or a no, not a diagnosis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True, slots=True)
class StoresAnswer:
    postgres: bool
    redis: bool

    @property
    def all(self) -> bool:
        return self.postgres and self.redis


async def _answers(check: Awaitable[object], timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(check, timeout_s)
    except Exception:  # see the module's note: any failure is a no
        return False
    return True


async def _postgres_round_trip(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def probe_stores(engine: AsyncEngine, redis: Redis, timeout_s: float) -> StoresAnswer:
    """Ask PostgreSQL and Redis at once, each within `timeout_s`."""
    pg, rd = await asyncio.gather(
        _answers(_postgres_round_trip(engine), timeout_s), _answers(redis.ping(), timeout_s)
    )
    return StoresAnswer(postgres=pg, redis=rd)
