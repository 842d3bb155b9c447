"""long external ids: RFC 5322 Message-IDs may run to a line (998 characters); keep up to 2048 ASCII

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# (table, column, old length): widened to 2048. Message-IDs are ASCII (the intake model enforces it), so a
# unique index on 2048 characters stays under PostgreSQL's btree row limit (2704 bytes).
WIDENED = (("inbound_messages", "message_id", 200), ("ticket_messages", "message_id", 200))
# Free-text targets that embed an external id: Text, never a length error.
TO_TEXT = (("writes", "target", 200), ("shadow_writes", "record_key", 200))


def upgrade() -> None:
    for table, column, old in WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.String(length=old), type_=sa.String(length=2048),
                                  existing_nullable=False)
    for table, column, old in TO_TEXT:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.String(length=old), type_=sa.Text(),
                                  existing_nullable=False)


def downgrade() -> None:
    for table, column, old in TO_TEXT:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.Text(), type_=sa.String(length=old),
                                  existing_nullable=False)
    for table, column, old in WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.String(length=2048), type_=sa.String(length=old),
                                  existing_nullable=False)
