"""The on-call system of record (same database as the framework's tables).

Incident triage: `service_catalog` (which team owns a service, and whom it escalates to) is read;
an alerting webhook writes `alerts`, which the sensor follows by `seq`; the workflow writes
`incidents`, one ticket for humans per alert it accepts. Nothing else: no table here is a lever on a
running system. The dedupe is in the schema too: one incident per creating intent, and at most one
OPEN incident per alert fingerprint (a partial unique index), so neither a retried run nor two alerts
racing for the same fingerprint can open a second ticket."""

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from agent_pipelines.framework.tables import Id, Ts, metadata

# Maintained by the platform team (trusted): the owner of a service decides its incidents; the
# escalation team is the one other team an incident of the service may be assigned to.
service_catalog = Table(
    "service_catalog",
    metadata,
    Column("service", String(64), primary_key=True),  # checkout-api
    Column("display_name", String(200), nullable=False),
    Column("owner_team", String(64), nullable=False),
    Column("escalation_team", String(64)),
    Column("tier", Integer, nullable=False, server_default="2"),  # 1: customer-facing critical path
    Column("status", String(16), nullable=False, server_default="active"),  # active | retired
)

# Written by the alerting webhook (untrusted: title and labels are whatever the sender put there).
# A re-sent alert with changed content is re-inserted with version + 1 (a new seq, a new intent).
alerts = Table(
    "alerts",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),  # the sensor's cursor
    Column("alert_id", String(64), nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("source", String(64), nullable=False, server_default=""),  # prometheus, webhook, ...
    Column("service", String(64), nullable=False, server_default=""),
    Column("fingerprint", String(128), nullable=False, server_default=""),  # same problem, same fingerprint
    Column("title", Text, nullable=False, server_default=""),
    Column("severity_label", String(16)),  # the alerting rule's own label (sev1..sev4), if any
    Column("routing_team", String(64)),  # the team the alerting rule routes to, if any
    Column("fired_at", Ts, nullable=False),
    UniqueConstraint("alert_id", "version"),
)

# Tickets for humans. The workflow creates them; people resolve them (status).
incidents = Table(
    "incidents",
    metadata,
    Column("incident_id", String(32), primary_key=True),  # INC-<hash of the creating intent>
    Column("service", String(64), nullable=False, index=True),
    Column("fingerprint", String(128), nullable=False),
    Column("severity", String(8), nullable=False),  # sev1..sev4
    Column("team", String(64), nullable=False),
    Column("summary", Text, nullable=False),
    Column("status", String(16), nullable=False),  # open | resolved
    Column("alert_id", String(64), nullable=False),
    Column("flags", JSON),  # e.g. instruction-like log lines, for whoever picks the ticket up
    Column("evidence", JSON),  # the metric figures the severity rests on
    Column("created_by_intent", String(200), nullable=False, unique=True),
    Column("created_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
)

Index("uq_incidents_open_fingerprint", incidents.c.fingerprint, unique=True,
      sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'"))
