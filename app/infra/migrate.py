"""Schema migrations at start-up, under a PostgreSQL advisory lock.

Several replicas starting together queue on the lock; the first applies the revisions,
the rest find nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

SOURCE_ROOT = Path(__file__).resolve().parents[2]
LOCK_KEY = 0x636861745F6D6967  # "chat_mig"


def migrations_dir() -> Path:
    """The source checkout's migrations, or (an installed image) those in the working dir."""
    for root in (SOURCE_ROOT, Path.cwd()):
        if (root / "migrations" / "env.py").exists():
            return root / "migrations"
    raise FileNotFoundError("no migrations/ directory beside the package or in the working dir")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        await connection.run_sync(_upgrade)
