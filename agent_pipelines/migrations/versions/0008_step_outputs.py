"""step outputs: Dagster op outputs kept in our database by our IO manager, not under $DAGSTER_HOME

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "step_outputs",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("step_key", sa.String(length=255), nullable=False),
        sa.Column("output_name", sa.String(length=255), nullable=False),
        sa.Column("intent_id", sa.String(length=80), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_outputs")),
        sa.UniqueConstraint("run_id", "step_key", "output_name", name=op.f("uq_step_outputs_run_id")),
    )
    op.create_index(op.f("ix_step_outputs_intent_id"), "step_outputs", ["intent_id"])
    op.create_index(op.f("ix_step_outputs_created_at"), "step_outputs", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_step_outputs_created_at"), table_name="step_outputs")
    op.drop_index(op.f("ix_step_outputs_intent_id"), table_name="step_outputs")
    op.drop_table("step_outputs")
