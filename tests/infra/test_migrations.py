"""The Alembic history builds exactly the schema the models describe, and unwinds cleanly."""

from __future__ import annotations

from alembic import command

from app.infra.migrate import alembic_config


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
