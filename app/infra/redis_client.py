"""The Redis client every part of an instance shares: one blocking pool with timeouts,
its commands packed by hiredis.

redis-py's asyncio connection packs each command in Python, argument by argument, even
when hiredis is installed (its synchronous connection uses hiredis). A publish round trip
carries three arguments per message, so packing showed up in profiles of `dm`; hiredis
packs the same bytes in C.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.connection import HiredisRespSerializer

# Redis answers in well under a millisecond; a call that takes seconds means it is gone.
TIMEOUT_S = 2.0
POOL_SIZE = 200


class _PackedByHiredis:
    """Mixed into the pool's connection class: the packing of redis-py's synchronous
    hiredis connection (command names split on spaces, as the Python packer does)."""

    _packer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = self._packer.pack(*args)
        return packed


def make_redis(url: str, health_check_interval_s: float) -> Redis:
    # A blocking pool: a burst (a reconnect storm) waits briefly for a free connection
    # instead of failing at once as the default pool does when all are in use.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=TIMEOUT_S,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        health_check_interval=health_check_interval_s,
    )
    base = pool.connection_class
    pool.connection_class = type(f"Hiredis{base.__name__}", (_PackedByHiredis, base), {})
    return Redis(connection_pool=pool)
