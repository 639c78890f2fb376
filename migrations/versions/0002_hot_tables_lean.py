"""messages and receipts: no foreign keys, one index less per message

The four foreign keys of the two tables written per message cost a quarter of
PostgreSQL's CPU per message (a trigger per row that looks up and share-locks the room
or user); what they guarded holds without them (see the note above `Message` in
`app/infra/db/tables.py`). The `(room_id, seq, sender_id)` index repeated the unique
`(room_id, seq)` one: the sender now rides along in that one (`INCLUDE`), so every
message updates one index fewer and the scans that used it still read the index alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 15:00:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEYS = (
    # (table, constraint, column, referenced, on delete)
    ("messages", "fk_messages_room_id_rooms", "room_id", "rooms", "CASCADE"),
    ("messages", "fk_messages_sender_id_users", "sender_id", "users", None),
    ("receipts", "fk_receipts_room_id_rooms", "room_id", "rooms", "CASCADE"),
    ("receipts", "fk_receipts_user_id_users", "user_id", "users", None),
)


def upgrade() -> None:
    for table, name, _, _, _ in _FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")
    op.drop_index("ix_messages_room_id_seq_sender_id", table_name="messages")
    op.drop_constraint("uq_messages_room_id_seq", "messages", type_="unique")
    # As SQL: Alembic's stand-in table for the constraint does not know the column.
    op.execute(
        "ALTER TABLE messages ADD CONSTRAINT uq_messages_room_id_seq"
        " UNIQUE (room_id, seq) INCLUDE (sender_id)"
    )


def downgrade() -> None:
    op.drop_constraint("uq_messages_room_id_seq", "messages", type_="unique")
    op.create_unique_constraint("uq_messages_room_id_seq", "messages", ["room_id", "seq"])
    op.create_index(
        "ix_messages_room_id_seq_sender_id", "messages", ["room_id", "seq", "sender_id"]
    )
    for table, name, column, referenced, ondelete in _FOREIGN_KEYS:
        op.create_foreign_key(name, table, referenced, [column], ["id"], ondelete=ondelete)
