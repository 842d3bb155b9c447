"""The support desk's system of record (same database as the framework's tables).

Ticket intake and triage: teams, products and requesters are read; an upstream mail gateway writes
`inbound_messages`, which the sensor follows by `seq`; the workflow writes `tickets` and
`ticket_messages`. UNIQUE constraints carry the dedupe: one ticket per creating intent, one
ticket_messages row per inbound message and per intent, so a retried or re-executed run cannot file
the same message twice."""

from sqlalchemy import JSON, Column, ForeignKey, Integer, String, Table, Text

from agent_pipelines.framework.tables import Id, Ts, metadata

teams = Table(
    "teams",
    metadata,
    Column("team_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("product_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("default_team_id", String(32), ForeignKey("teams.team_id"), nullable=False),
)

requesters = Table(
    "requesters",
    metadata,
    Column("requester_id", String(32), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),  # stored lower-case: the lookup key
    Column("name", String(200), nullable=False),
    Column("org", String(200), nullable=False),
)

# Written by the upstream mail gateway, never by a workflow. A corrected message is re-inserted with
# version + 1 (a new seq), so the sensor sees it and it becomes a new intent.
inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),  # the sensor's cursor
    Column("message_id", String(2048), nullable=False, unique=True),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("sender", String(320), nullable=False, server_default=""),
    Column("subject", String(500), nullable=False, server_default=""),
    Column("body", Text, nullable=False, server_default=""),
    Column("attachments", JSON),  # [{filename, content_type, size_bytes}]: metadata only, never content
    Column("product", String(200)),  # set when the message came through a form that asks for it
    Column("received_at", Ts, nullable=False),
)

tickets = Table(
    "tickets",
    metadata,
    Column("ticket_id", String(32), primary_key=True),  # T-1001, T-1002, ...
    Column("requester_id", String(32), ForeignKey("requesters.requester_id"), nullable=False, index=True),
    Column("product_id", String(32), ForeignKey("products.product_id"), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("category", String(32), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("team_id", String(32), ForeignKey("teams.team_id"), nullable=False),  # the assignment
    Column("status", String(16), nullable=False, index=True),  # open | closed
    Column("summary", String(500), nullable=False),
    Column("flags", JSON),  # what a human should see first, e.g. instruction-like text in a message
    Column("created_by_intent", String(80), unique=True),  # null for tickets filed before automation
    Column("created_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
)

ticket_messages = Table(
    "ticket_messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ticket_id", String(32), ForeignKey("tickets.ticket_id"), nullable=False, index=True),
    Column("message_id", String(2048), nullable=False, unique=True),
    Column("intent_id", String(80), unique=True),  # null for messages filed before automation
    Column("body", Text, nullable=False),
    Column("attachments", JSON),
    Column("added_at", Ts, nullable=False),
)
