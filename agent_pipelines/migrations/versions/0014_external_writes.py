"""writes.evidence: what an external write's row rests on (the HTTP answer, or what a read-back of the
external system found); writes.status gains pending and reconciled for calls outside our transaction

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("writes") as batch:
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=True))
    # Recovery looks for pending external writes: few rows, but looked up on every status and sweep.
    op.create_index(op.f("ix_writes_status"), "writes", ["status"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_writes_status"), table_name="writes")
    with op.batch_alter_table("writes") as batch:
        batch.drop_column("evidence")
