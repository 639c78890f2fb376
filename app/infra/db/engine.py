"""The async engine: bounded pool waits and statement timeouts, so a stalled store fails fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.infra.metrics import Metrics
from app.settings import Settings


def make_engine(
    url: str,
    settings: Settings,
    metrics: Metrics | None = None,
    *,
    pool_size: int | None = None,
    pre_ping: bool = True,
) -> AsyncEngine:
    """`pre_ping` costs three round trips per checkout (BEGIN, a ping, ROLLBACK) and suits
    requests; the write lanes turn it off and retry a stale connection themselves."""
    size = pool_size if pool_size is not None else settings.db_pool_size
    engine = create_async_engine(
        url,
        pool_size=size,
        max_overflow=size // 2,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=pre_ping,
        connect_args={
            "timeout": settings.db_pool_timeout_s,
            "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "lock_timeout": str(settings.db_statement_timeout_ms),
                "idle_in_transaction_session_timeout": "60000",
                "application_name": "chat",
                "timezone": "UTC",
            },
        },
    )
    event.listen(engine.sync_engine.pool, "invalidate", _abort_if_unanswering)
    if metrics is not None:
        event.listen(engine.sync_engine, "handle_error", _counter(metrics))
    return engine


def _counter(metrics: Metrics) -> Callable[[ExceptionContext], None]:
    def count(context: ExceptionContext) -> None:
        # Store trouble (a lost connection, a timeout), not a refused statement.
        original = context.original_exception
        name = type(original).__name__
        timed_out = "timeout" in name.lower() or "Cancel" in name
        if context.is_disconnect or isinstance(original, TimeoutError | OSError) or timed_out:
            metrics.store_errors.labels(store="postgres").inc()

    return count


def _abort_if_unanswering(
    dbapi_connection: Any, _record: Any, exception: BaseException | None
) -> None:
    """A connection dropped because it timed out or its socket failed is aborted at once.

    Otherwise SQLAlchemy closes it politely and waits up to 2 s for a server that is not
    answering (that is why it is being dropped): a stalled PostgreSQL then took the full
    command timeout plus those 2 s to report, past the 5 s in which a request must fail.
    """
    if not isinstance(exception, (TimeoutError, OSError)) or dbapi_connection is None:
        return
    driver = getattr(dbapi_connection, "driver_connection", None)
    terminate = getattr(driver, "terminate", None)
    if callable(terminate):
        terminate()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
