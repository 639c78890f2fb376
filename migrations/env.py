"""Alembic environment: online migrations over asyncpg, or over a connection we are handed."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.infra.db.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_url(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


def main() -> None:
    handed: Connection | None = config.attributes.get("connection")
    if handed is not None:
        _run(handed)
        return
    url = os.environ.get("CHAT_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set CHAT_DATABASE_URL to the PostgreSQL URL to migrate")
    asyncio.run(_run_from_url(url))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
main()
