"""durable completion: intent claims and recovery bookkeeping, inbox file identity, sensor cursors

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("intents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_run_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", Ts, nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", Ts, nullable=True))
        batch_op.add_column(sa.Column("recovery_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("next_recovery_at", Ts, nullable=True))
    op.create_table(
        "inbox_files",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("sensor", sa.String(length=120), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("intent_id", sa.String(length=80), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("first_seen_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_files")),
        sa.UniqueConstraint("sensor", "name", "content_digest", name=op.f("uq_inbox_files_sensor")),
    )
    op.create_table(
        "sensor_cursors",
        sa.Column("sensor", sa.String(length=120), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("sensor", name=op.f("pk_sensor_cursors")),
    )


def downgrade() -> None:
    op.drop_table("sensor_cursors")
    op.drop_table("inbox_files")
    with op.batch_alter_table("intents", schema=None) as batch_op:
        for col in ("next_recovery_at", "recovery_attempts", "heartbeat_at", "lease_expires_at", "owner_run_id"):
            batch_op.drop_column(col)
