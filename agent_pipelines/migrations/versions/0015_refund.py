"""refund: refund_requests (the sensor's table) and refund_notices (customer-notification drafts)

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "refund_requests",
        sa.Column("seq", _ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("customer_email", sa.String(length=254), server_default="", nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), server_default="", nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_refund_requests")),
        sa.UniqueConstraint("request_id", "version", name=op.f("uq_refund_requests_request_id")),
    )
    op.create_index(op.f("ix_refund_requests_order_id"), "refund_requests", ["order_id"], unique=False)
    op.create_table(
        "refund_notices",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("intent_id", sa.String(length=80), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refund_notices")),
        sa.UniqueConstraint("intent_id", name=op.f("uq_refund_notices_intent_id")),
    )
    op.create_index(op.f("ix_refund_notices_order_id"), "refund_notices", ["order_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_refund_notices_order_id"), table_name="refund_notices")
    op.drop_table("refund_notices")
    op.drop_index(op.f("ix_refund_requests_order_id"), table_name="refund_requests")
    op.drop_table("refund_requests")
