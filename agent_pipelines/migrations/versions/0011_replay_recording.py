"""replay recording: intent_runs (versions, intake digest, decision and planned writes per intent and
run) and the step of each tool call

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("tool_calls") as batch:
        batch.add_column(sa.Column("step", sa.String(length=32), nullable=True))
    op.create_table(
        "intent_runs",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("intent_id", sa.String(length=80), nullable=False),
        sa.Column("workflow", sa.String(length=64), nullable=False),
        sa.Column("workflow_version", sa.String(length=32), nullable=False),
        sa.Column("prompt_version", sa.String(length=32), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("policy_digest", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("intake_digest", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=True),
        sa.Column("rule", sa.String(length=64), nullable=True),
        sa.Column("planned_writes", sa.JSON(), nullable=True),
        sa.Column("started_at", Ts, nullable=False),
        sa.Column("decided_at", Ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intent_runs")),
        sa.UniqueConstraint("run_id", "intent_id", name=op.f("uq_intent_runs_run_id")),
    )
    op.create_index(op.f("ix_intent_runs_intent_id"), "intent_runs", ["intent_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_intent_runs_intent_id"), table_name="intent_runs")
    op.drop_table("intent_runs")
    with op.batch_alter_table("tool_calls") as batch:
        batch.drop_column("step")
