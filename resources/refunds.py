"""Refunds' tables in our database. The orders, their captured amounts and the refunds themselves live
in the payments service (agent_pipelines/services/payments.py), reached only over its HTTP API.

`refund_requests` is written by the upstream support form / chat gateway, never by a workflow; the
sensor follows it by `seq`. `refund_notices` holds the customer-notification draft each completed
refund hands off: stored, never sent unless the policy pack's hand_off section allows it."""

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from agent_pipelines.framework.tables import Id, Ts, metadata

# A corrected request is re-inserted with version + 1 (a new seq), so it becomes a new intent.
refund_requests = Table(
    "refund_requests",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),  # the sensor's cursor
    Column("request_id", String(64), nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("order_id", String(64), index=True),  # null when the customer did not give it
    Column("customer_email", String(254), nullable=False, server_default=""),
    Column("amount_cents", BigInteger),  # what the customer asks for; null: whatever is left to refund
    Column("reason", String(64)),  # the reason the customer picked on the form, if any
    Column("text", Text, nullable=False, server_default=""),  # the customer's message: untrusted
    Column("submitted_at", Ts, nullable=False),
    UniqueConstraint("request_id", "version"),
)

# One draft per intent (the unique intent_id is the second line behind the ledger's idempotency key).
refund_notices = Table(
    "refund_notices",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("intent_id", String(80), nullable=False, unique=True),
    Column("request_id", String(64), nullable=False),
    Column("order_id", String(64), nullable=False, index=True),
    Column("to_address", String(254), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),  # draft | ready_to_send (only when the pack allows sending)
    Column("created_at", Ts, nullable=False),
)
