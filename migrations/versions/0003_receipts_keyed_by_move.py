"""receipts: keyed by the move they record, without a surrogate id

A receipt row is written each time a watermark moves, nearly one per message under load,
and nothing ever read its `id`: every read goes by (room, user, kind, up_to_seq), which
had an index of its own beside the id's. That index becomes the primary key, so each
row updates one index instead of two and draws no number from a sequence. The key is
unique by construction: a member's watermark of one kind only moves up, so it reaches
each seq at most once.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 04:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = ["room_id", "user_id", "kind", "up_to_seq"]


def upgrade() -> None:
    # Rows a bug could have written twice would block the key: the first of each stays.
    op.execute(
        "DELETE FROM receipts AS later USING receipts AS first"
        " WHERE later.room_id = first.room_id AND later.user_id = first.user_id"
        " AND later.kind = first.kind AND later.up_to_seq = first.up_to_seq"
        " AND later.id > first.id"
    )
    op.drop_index("ix_receipts_room_id_user_id_kind_up_to_seq", table_name="receipts")
    op.drop_constraint("pk_receipts", "receipts", type_="primary")
    op.drop_column("receipts", "id")
    op.create_primary_key("pk_receipts", "receipts", _KEY)


def downgrade() -> None:
    op.drop_constraint("pk_receipts", "receipts", type_="primary")
    op.add_column(
        "receipts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
    )
    op.create_primary_key("pk_receipts", "receipts", ["id"])
    op.create_index("ix_receipts_room_id_user_id_kind_up_to_seq", "receipts", _KEY)
