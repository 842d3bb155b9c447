"""notifications: the outbox of approval-request notifications (webhook, e-mail) with their attempts

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.String(length=40), nullable=False),
        sa.Column("approval_id", sa.String(length=80), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", Ts, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", Ts, nullable=True),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("notification_id", name=op.f("pk_notifications")),
    )
    op.create_index(op.f("ix_notifications_approval_id"), "notifications", ["approval_id"], unique=False)
    op.create_index(op.f("ix_notifications_next_attempt_at"), "notifications", ["next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notifications_next_attempt_at"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_approval_id"), table_name="notifications")
    op.drop_table("notifications")
