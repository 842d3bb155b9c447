"""trace_access: who read which intent's or run's trace, when, and through what (cli | console)

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "trace_access",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("what", sa.String(length=64), nullable=False),
        sa.Column("intent_id", sa.String(length=80), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("approval_id", sa.String(length=80), nullable=True),
        sa.Column("at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trace_access")),
    )
    op.create_index(op.f("ix_trace_access_intent_id"), "trace_access", ["intent_id"], unique=False)
    op.create_index(op.f("ix_trace_access_at"), "trace_access", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_trace_access_at"), table_name="trace_access")
    op.drop_index(op.f("ix_trace_access_intent_id"), table_name="trace_access")
    op.drop_table("trace_access")
