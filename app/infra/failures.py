"""Which exceptions mean "a store is unreachable" (answered UNAVAILABLE, never INTERNAL).

One definition for both transports, so REST and the WebSocket agree on what a fault is.
"""

from __future__ import annotations

from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

STORE_DOWN = (
    OperationalError,
    InterfaceError,
    PoolTimeout,
    RedisError,
    ConnectionError,
    TimeoutError,
)


def store_down(exc: BaseException) -> bool:
    if isinstance(exc, STORE_DOWN):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
