"""incident triage: service_catalog, alerts (the webhook's table, followed by seq) and incidents (one
ticket per accepted alert; at most one open incident per fingerprint)

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "service_catalog",
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("owner_team", sa.String(length=64), nullable=False),
        sa.Column("escalation_team", sa.String(length=64), nullable=True),
        sa.Column("tier", sa.Integer(), server_default="2", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.PrimaryKeyConstraint("service", name=op.f("pk_service_catalog")),
    )
    op.create_table(
        "alerts",
        sa.Column("seq", _ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("source", sa.String(length=64), server_default="", nullable=False),
        sa.Column("service", sa.String(length=64), server_default="", nullable=False),
        sa.Column("fingerprint", sa.String(length=128), server_default="", nullable=False),
        sa.Column("title", sa.Text(), server_default="", nullable=False),
        sa.Column("severity_label", sa.String(length=16), nullable=True),
        sa.Column("routing_team", sa.String(length=64), nullable=True),
        sa.Column("fired_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_alerts")),
        sa.UniqueConstraint("alert_id", "version", name=op.f("uq_alerts_alert_id")),
    )
    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("created_by_intent", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("incident_id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("created_by_intent", name=op.f("uq_incidents_created_by_intent")),
    )
    op.create_index(op.f("ix_incidents_service"), "incidents", ["service"], unique=False)
    # At most one open incident per fingerprint: the last line of the dedupe, in the schema.
    op.create_index("uq_incidents_open_fingerprint", "incidents", ["fingerprint"], unique=True,
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))


def downgrade() -> None:
    op.drop_index("uq_incidents_open_fingerprint", table_name="incidents")
    op.drop_index(op.f("ix_incidents_service"), table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("alerts")
    op.drop_table("service_catalog")
