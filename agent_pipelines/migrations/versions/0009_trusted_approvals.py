"""trusted approvals: reviewers with hashed personal tokens, signed decisions, the policy pinned per
request, and the hash-chained approval_events audit table with its sealed head

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy_digest", sa.String(length=64), nullable=True))
    with op.batch_alter_table("approval_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reviewer_token_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("signature", sa.String(length=64), nullable=True))
    op.create_table(
        "reviewers",
        sa.Column("token_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("seal", sa.String(length=64), nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("revoked_at", Ts, nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_reviewers")),
    )
    op.create_index(op.f("ix_reviewers_name"), "reviewers", ["name"], unique=False)
    op.create_table(
        "approval_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("approval_id", sa.String(length=80), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_approval_events")),
    )
    op.create_index(op.f("ix_approval_events_approval_id"), "approval_events", ["approval_id"], unique=False)
    op.create_table(
        "audit_head",
        sa.Column("chain", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("seal", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_head")),
    )


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_index(op.f("ix_approval_events_approval_id"), table_name="approval_events")
    op.drop_table("approval_events")
    op.drop_index(op.f("ix_reviewers_name"), table_name="reviewers")
    op.drop_table("reviewers")
    with op.batch_alter_table("approval_decisions", schema=None) as batch_op:
        batch_op.drop_column("signature")
        batch_op.drop_column("reviewer_token_id")
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.drop_column("policy_digest")
