"""Typed tools over the invoice system of record. The workflow reaches these tables only through the
gateway; write tools run inside the ledger's transaction and report before/after."""

from datetime import date

from pydantic import BaseModel, Field
from sqlalchemy import Connection, bindparam, func, select, update

from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.tools import Impact, PermanentToolError, Tool, ToolKind, ToolRegistry
from agent_pipelines.framework.ledger import PreconditionFailed, WriteOutcome
from agent_pipelines.framework.sql import for_update
from agent_pipelines.workflows.invoice_matching.models import POLineSnapshot, POSnapshot, StagedRef, VendorSnapshot
from resources.system_of_record import (
    po_lines,
    purchase_orders,
    scheduled_payments,
    staged_invoice_lines,
    staged_invoices,
    vendors,
)


# Each statement is built once, here, and run with its values as parameters: building and hashing a new
# statement tree per call cost more than running it (framework/sql.py says why).
_VENDOR_BY_REF = select(vendors).where((vendors.c.vendor_id == bindparam("p_id"))
                                       | (func.lower(vendors.c.name) == bindparam("p_name")))
_VENDOR = select(vendors).where(vendors.c.vendor_id == bindparam("p_id"))
_PO = select(purchase_orders).where(purchase_orders.c.po_number == bindparam("p_po"))
_PO_LINES = select(po_lines).where(po_lines.c.po_number == bindparam("p_po")).order_by(po_lines.c.line_no)
_OPEN_POS = (select(purchase_orders).where(purchase_orders.c.vendor_id == bindparam("p_vendor"),
                                           purchase_orders.c.status == "open").order_by(purchase_orders.c.po_number))
_STAGED_BY_NUMBER = select(staged_invoices).where(staged_invoices.c.vendor_id == bindparam("p_vendor"),
                                                  staged_invoices.c.invoice_number == bindparam("p_number"))
_STAGED = select(staged_invoices).where(staged_invoices.c.invoice_id == bindparam("p_id"))
_STAGED_LINES = (select(staged_invoice_lines).where(staged_invoice_lines.c.invoice_id == bindparam("p_id"))
                 .order_by(staged_invoice_lines.c.line_no))
_PAYMENT = select(scheduled_payments).where(scheduled_payments.c.invoice_id == bindparam("p_id"))
_STAGE, _STAGE_LINES, _SCHEDULE = staged_invoices.insert(), staged_invoice_lines.insert(), scheduled_payments.insert()
_INVOICED = (update(purchase_orders).where(purchase_orders.c.po_number == bindparam("p_po"))
             .values(invoiced_cents=bindparam("p_invoiced"), version=bindparam("p_version")))


# -- read tools ----------------------------------------------------------------------------------------
class FindVendor(BaseModel):
    ref: str = Field(min_length=1, max_length=200, description="vendor id or name as written on the invoice")


def find_vendor(conn: Connection, p: FindVendor) -> VendorSnapshot | None:
    ref = p.ref.strip()
    row = conn.execute(_VENDOR_BY_REF, {"p_id": ref.upper(), "p_name": ref.lower()}).mappings().first()
    return None if row is None else VendorSnapshot.model_validate({k: row[k] for k in VendorSnapshot.model_fields})


class GetPurchaseOrder(BaseModel):
    po_number: str = Field(min_length=1, max_length=32)


def _po(conn: Connection, row: dict) -> POSnapshot:
    lines = conn.execute(_PO_LINES, {"p_po": row["po_number"]}).mappings()
    return POSnapshot(**{k: row[k] for k in POSnapshot.model_fields if k != "lines"},
                      lines=tuple(POLineSnapshot.model_validate({k: li[k] for k in POLineSnapshot.model_fields})
                                  for li in lines))


def get_purchase_order(conn: Connection, p: GetPurchaseOrder) -> POSnapshot | None:
    row = conn.execute(_PO, {"p_po": p.po_number.strip().upper()}).mappings().first()
    return None if row is None else _po(conn, dict(row))


class ListOpenPurchaseOrders(BaseModel):
    vendor_id: str = Field(min_length=1, max_length=32)


def list_open_purchase_orders(conn: Connection, p: ListOpenPurchaseOrders) -> list[POSnapshot]:
    rows = conn.execute(_OPEN_POS, {"p_vendor": p.vendor_id}).mappings()
    return [_po(conn, dict(r)) for r in rows]


class FindStagedInvoice(BaseModel):
    vendor_id: str
    invoice_number: str


def find_staged_invoice(conn: Connection, p: FindStagedInvoice) -> StagedRef | None:
    row = conn.execute(_STAGED_BY_NUMBER, {"p_vendor": p.vendor_id, "p_number": p.invoice_number}).mappings().first()
    return None if row is None else StagedRef.model_validate({k: row[k] for k in StagedRef.model_fields})


class GetStagedInvoice(BaseModel):
    invoice_id: str


def get_staged_invoice(conn: Connection, p: GetStagedInvoice) -> dict | None:
    """Everything the commit wrote for one invoice, read back for VERIFY."""
    inv = conn.execute(_STAGED, {"p_id": p.invoice_id}).mappings().first()
    if inv is None:
        return None
    lines = conn.execute(_STAGED_LINES, {"p_id": p.invoice_id}).mappings()
    pay = conn.execute(_PAYMENT, {"p_id": p.invoice_id}).mappings().first()
    po = conn.execute(_PO, {"p_po": inv["po_number"]}).mappings().one()
    return {"invoice": dict(inv), "lines": [dict(li) for li in lines], "payment": dict(pay) if pay else None,
            "po": dict(po)}


# -- write tools ---------------------------------------------------------------------------------------
class StagedLine(BaseModel):
    line_no: int
    po_line_no: int | None
    sku: str | None
    description: str = Field(max_length=500)
    quantity: float = Field(gt=0)
    unit_price_cents: int = Field(ge=0)
    amount_cents: int = Field(ge=0)


class StageInvoice(BaseModel):
    invoice_id: str
    intent_id: str
    vendor_id: str
    invoice_number: str = Field(min_length=1, max_length=64)
    po_number: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount_cents: int = Field(gt=0)
    payable_cents: int = Field(gt=0)
    variance_cents: int
    invoice_date: date | None
    due_date: date
    lines: list[StagedLine]


def stage_invoice(conn: Connection, p: StageInvoice) -> WriteOutcome:
    row = p.model_dump(exclude={"lines"})
    conn.execute(_STAGE, {**row, "staged_at": utcnow()})
    if p.lines:
        conn.execute(_STAGE_LINES, [{"invoice_id": p.invoice_id, **li.model_dump()} for li in p.lines])
    return WriteOutcome(table="staged_invoices", key=p.invoice_id, before=None,
                        after=p.model_dump(mode="json", exclude={"lines"}) | {"lines": len(p.lines)})


class RecordPOInvoiced(BaseModel):
    po_number: str
    expected_version: int = Field(description="the PO version read in READ: the write's precondition")
    add_cents: int = Field(gt=0)


def record_po_invoiced(conn: Connection, p: RecordPOInvoiced) -> WriteOutcome:
    row = conn.execute(for_update(conn, _PO), {"p_po": p.po_number}).mappings().first()
    if row is None:
        raise PermanentToolError(f"PO {p.po_number} does not exist")
    if row["version"] != p.expected_version or row["status"] != "open":
        raise PreconditionFailed(f"PO {p.po_number} changed since it was read (version {p.expected_version} -> "
                                 f"{row['version']}, status {row['status']})")
    before = {"invoiced_cents": row["invoiced_cents"], "version": row["version"]}
    after = {"invoiced_cents": row["invoiced_cents"] + p.add_cents, "version": row["version"] + 1}
    conn.execute(_INVOICED, {"p_po": p.po_number, "p_invoiced": after["invoiced_cents"], "p_version": after["version"]})
    return WriteOutcome(table="purchase_orders", key=p.po_number, before=before, after=after)


class SchedulePayment(BaseModel):
    invoice_id: str
    intent_id: str
    vendor_id: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount_cents: int = Field(gt=0)
    pay_on: date


def schedule_payment(conn: Connection, p: SchedulePayment) -> WriteOutcome:
    # The payee account comes from the vendor master, never from the invoice or the model.
    vendor = conn.execute(_VENDOR, {"p_id": p.vendor_id}).mappings().first()
    if vendor is None or vendor["status"] != "active":
        raise PreconditionFailed(f"vendor {p.vendor_id} is not active")
    payment_id = f"PAY-{p.invoice_id}"
    conn.execute(_SCHEDULE, dict(payment_id=payment_id, payment_account=vendor["payment_account"],
                                 scheduled_at=utcnow(), **p.model_dump()))
    return WriteOutcome(table="scheduled_payments", key=payment_id, before=None,
                        after=p.model_dump(mode="json") | {"payment_account": vendor["payment_account"]})


def registry() -> ToolRegistry:
    R, W, LOW, HIGH = ToolKind.READ, ToolKind.WRITE, Impact.LOW, Impact.HIGH
    # Every tool here is statements on the connection it is given: local (framework/deadline.py).
    return ToolRegistry(local=True, tools=[
        Tool("find_vendor", FindVendor, R, LOW, find_vendor),
        Tool("get_purchase_order", GetPurchaseOrder, R, LOW, get_purchase_order),
        Tool("list_open_purchase_orders", ListOpenPurchaseOrders, R, LOW, list_open_purchase_orders),
        Tool("find_staged_invoice", FindStagedInvoice, R, LOW, find_staged_invoice),
        Tool("get_staged_invoice", GetStagedInvoice, R, LOW, get_staged_invoice),
        Tool("stage_invoice", StageInvoice, W, LOW, stage_invoice),
        Tool("record_po_invoiced", RecordPOInvoiced, W, LOW, record_po_invoiced),
        Tool("schedule_payment", SchedulePayment, W, HIGH, schedule_payment),
    ])
