"""The Alembic history builds exactly the schema the models describe, and unwinds cleanly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from alembic import command

from app.infra.migrate import alembic_config
from tests.support import run_sql


def test_upgraded_schema_matches_the_models(scratch_database: str) -> None:
    config = alembic_config()
    command.upgrade(config, "head")
    command.check(config)  # raises when autogenerate would find anything to add


def test_migrations_downgrade_to_nothing_and_upgrade_again(scratch_database: str) -> None:
    config = alembic_config()
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    command.check(config)


def test_receipts_keyed_by_move_keep_the_first_row_of_a_move_stored_twice(
    scratch_database: str,
) -> None:
    config = alembic_config()
    command.upgrade(config, "0002")
    room = uuid.uuid4()
    first, again, later = (datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in (1, 2, 3))
    for seq, at in ((5, first), (5, again), (7, later)):
        run_sql(
            scratch_database,
            "INSERT INTO receipts (room_id, user_id, kind, up_to_seq, at)"
            " VALUES ($1, 'u1', 'delivered', $2, $3)",
            room,
            seq,
            at,
        )

    command.upgrade(config, "head")

    rows = run_sql(scratch_database, "SELECT up_to_seq, at FROM receipts ORDER BY up_to_seq")
    assert [(row["up_to_seq"], row["at"]) for row in rows] == [(5, first), (7, later)]
