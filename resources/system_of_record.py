"""The systems of record the shipped workflows act on (same database as the framework's tables).

Invoice-to-PO matching: vendors and purchase orders are read; staged invoices, their lines and
scheduled payments are written. UNIQUE constraints back the dedupe (one staged invoice per vendor
and invoice number, one per intent; one payment per staged invoice)."""

from sqlalchemy import BigInteger, Column, Date, Float, ForeignKey, Integer, String, Table, Text, UniqueConstraint

from agent_pipelines.framework.tables import Ts, metadata

vendors = Table(
    "vendors",
    metadata,
    Column("vendor_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(16), nullable=False),  # active | on_hold
    Column("currency", String(3), nullable=False),
    Column("payment_account", String(64), nullable=False),  # where money goes: from here, never the invoice
    Column("payment_terms_days", Integer, nullable=False),
)

purchase_orders = Table(
    "purchase_orders",
    metadata,
    Column("po_number", String(32), primary_key=True),
    Column("vendor_id", String(32), ForeignKey("vendors.vendor_id"), nullable=False),
    Column("status", String(16), nullable=False),  # open | closed
    Column("currency", String(3), nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("invoiced_cents", BigInteger, nullable=False),
    Column("version", Integer, nullable=False),  # bumped on every change: the write precondition
)

po_lines = Table(
    "po_lines",
    metadata,
    Column("po_number", String(32), ForeignKey("purchase_orders.po_number"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("description", String(200), nullable=False),
    Column("quantity", Float, nullable=False),
    Column("unit_price_cents", BigInteger, nullable=False),
)

staged_invoices = Table(
    "staged_invoices",
    metadata,
    Column("invoice_id", String(80), primary_key=True),
    Column("vendor_id", String(32), ForeignKey("vendors.vendor_id"), nullable=False),
    Column("invoice_number", String(64), nullable=False),
    Column("po_number", String(32), ForeignKey("purchase_orders.po_number"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),  # the invoice total
    Column("payable_cents", BigInteger, nullable=False),  # what is paid: the total, or less if approved
    Column("variance_cents", BigInteger, nullable=False),
    Column("invoice_date", Date),
    Column("due_date", Date, nullable=False),
    Column("intent_id", String(80), nullable=False, unique=True),
    Column("staged_at", Ts, nullable=False),
    UniqueConstraint("vendor_id", "invoice_number"),
)

staged_invoice_lines = Table(
    "staged_invoice_lines",
    metadata,
    Column("invoice_id", String(80), ForeignKey("staged_invoices.invoice_id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("po_line_no", Integer),
    Column("sku", String(64)),
    Column("description", Text, nullable=False),
    Column("quantity", Float, nullable=False),
    Column("unit_price_cents", BigInteger, nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
)

scheduled_payments = Table(
    "scheduled_payments",
    metadata,
    Column("payment_id", String(80), primary_key=True),
    Column("invoice_id", String(80), ForeignKey("staged_invoices.invoice_id"), nullable=False, unique=True),
    Column("vendor_id", String(32), ForeignKey("vendors.vendor_id"), nullable=False),
    Column("payment_account", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("pay_on", Date, nullable=False),
    Column("intent_id", String(80), nullable=False, unique=True),
    Column("scheduled_at", Ts, nullable=False),
)
