"""Typed tools of the refund workflow, all through the gateway (traced, budgeted, within policy).

Read tools: the order and its refunds come from the payments API (`read_json`: the system of record is
another service); earlier requests for the same order and the notice drafts come from our database.
Write tools: `create_refund` is the external write (services/clients.refund_tool: a pending ledger row,
the Idempotency-Key, read-back recovery); `draft_refund_notice` stores the customer-notification draft
in refund_notices inside the ledger's transaction. No tool sends anything to a customer."""

from typing import Annotated

from pydantic import BaseModel, Field
from sqlalchemy import Connection, bindparam, select

from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.external import read_json
from agent_pipelines.framework.tools import Impact, PermanentToolError, Tool, ToolKind, ToolRegistry
from agent_pipelines.framework.intents import record_intent_id
from agent_pipelines.framework.ledger import WriteOutcome
from agent_pipelines.framework.tables import intents
from agent_pipelines.services.clients import refund_tool
from agent_pipelines.workflows.refund.models import (
    ORDER_ID_PATTERN,
    WORKFLOW,
    EarlierRequest,
    NoticeSnapshot,
    OrderSnapshot,
    RefundSnapshot,
)
from resources.refunds import refund_notices, refund_requests

OrderId = Annotated[str, Field(pattern=rf"^{ORDER_ID_PATTERN}$")]
SERVICE = "payments"

# Each statement is built once, here, and run with its values as parameters: building and hashing a new
# statement tree per call cost more than running it (framework/sql.py says why).
_REQUESTS = (select(refund_requests.c.request_id, refund_requests.c.version, refund_requests.c.seq,
                    refund_requests.c.amount_cents)
             .where(refund_requests.c.order_id == bindparam("p_order")).order_by(refund_requests.c.seq))
_STATES = select(intents.c.intent_id, intents.c.state).where(intents.c.intent_id.in_(bindparam("p_ids", expanding=True)))
_NOTICE = select(refund_notices).where(refund_notices.c.intent_id == bindparam("p_intent"))
_NOTICE_ID = select(refund_notices.c.id).where(refund_notices.c.intent_id == bindparam("p_intent"))
_NEW_NOTICE = refund_notices.insert()


# -- read tools: the payments API ----------------------------------------------------------------------
class GetOrder(BaseModel):
    order_id: OrderId


def get_order(conn: Connection, p: GetOrder) -> OrderSnapshot | None:
    found = read_json(SERVICE, f"/orders/{p.order_id}")
    return None if found is None else OrderSnapshot.model_validate(
        {k: found[k] for k in OrderSnapshot.model_fields if k in found})


class ListOrderRefunds(BaseModel):
    order_id: OrderId
    reference: str | None = Field(None, max_length=200, description="only the refunds carrying this reference "
                                  "(VERIFY: the ones made for one request)")


def list_order_refunds(conn: Connection, p: ListOrderRefunds) -> list[RefundSnapshot]:
    found = read_json(SERVICE, f"/orders/{p.order_id}/refunds") or {"data": []}
    return [RefundSnapshot.model_validate({k: r.get(k) for k in RefundSnapshot.model_fields if k in r})
            for r in found["data"] if p.reference is None or r.get("reference") == p.reference]


class GetRefund(BaseModel):
    refund_id: str = Field(pattern=r"^re_[0-9A-Za-z]{1,32}$")


def get_refund(conn: Connection, p: GetRefund) -> RefundSnapshot | None:
    found = read_json(SERVICE, f"/refunds/{p.refund_id}")
    return None if found is None else RefundSnapshot.model_validate(
        {k: found.get(k) for k in RefundSnapshot.model_fields if k in found})


# -- read tools: our database --------------------------------------------------------------------------
class ListOrderRequests(BaseModel):
    order_id: OrderId


def list_order_requests(conn: Connection, p: ListOrderRequests) -> list[EarlierRequest]:
    """Every refund request naming this order in its form field, with its intent's state."""
    rows = conn.execute(_REQUESTS, {"p_order": p.order_id}).all()
    ids = {record_intent_id(WORKFLOW, row.request_id, row.version): row for row in rows}
    states = dict(conn.execute(_STATES, {"p_ids": list(ids)}).all()) if ids else {}
    return [EarlierRequest(request_id=row.request_id, version=row.version, seq=row.seq, amount_cents=row.amount_cents,
                           state=states.get(i)) for i, row in ids.items()]


class GetRefundNotice(BaseModel):
    intent_id: str = Field(min_length=1, max_length=80)


def get_refund_notice(conn: Connection, p: GetRefundNotice) -> NoticeSnapshot | None:
    row = conn.execute(_NOTICE, {"p_intent": p.intent_id}).mappings().first()
    return None if row is None else NoticeSnapshot.model_validate({k: row[k] for k in NoticeSnapshot.model_fields})


# -- write tool: the customer-notification draft (the refund itself is clients.refund_tool) -------------
class DraftRefundNotice(BaseModel):
    intent_id: str = Field(min_length=1, max_length=80)
    request_id: str = Field(min_length=1, max_length=64)
    order_id: OrderId
    to_address: str = Field(min_length=3, max_length=254)
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=4000)
    status: str = Field(description="draft, or ready_to_send when the pack allows sending")


def draft_refund_notice(conn: Connection, p: DraftRefundNotice) -> WriteOutcome:
    """Store the draft (one per intent). It is a row in our database; nothing is sent from here."""
    exists = conn.execute(_NOTICE_ID, {"p_intent": p.intent_id}).first()
    if exists is not None:
        raise PermanentToolError(f"intent {p.intent_id} already has a notice draft")
    now = utcnow()
    conn.execute(_NEW_NOTICE, {**p.model_dump(), "created_at": now})
    return WriteOutcome(table="refund_notices", key=p.intent_id, before=None,
                        after={"order_id": p.order_id, "to_address": p.to_address, "subject": p.subject,
                               "status": p.status, "created_at": now.isoformat()})


def registry(*, attempts: int = 5, timeout_s: float = 10.0) -> ToolRegistry:
    """`attempts`/`timeout_s` of the refund call: tests shorten them to lose an answer quickly."""
    R, LOW = ToolKind.READ, Impact.LOW
    return ToolRegistry([
        Tool("get_order", GetOrder, R, LOW, get_order, description="The order with captured and refunded cents"),
        Tool("list_order_refunds", ListOrderRefunds, R, LOW, list_order_refunds,
             description="The order's refunds in the payments API"),
        Tool("get_refund", GetRefund, R, LOW, get_refund, description="One refund, read back from the payments API"),
        Tool("list_order_requests", ListOrderRequests, R, LOW, list_order_requests,
             description="Other refund requests for the order, with their intents' states"),
        Tool("get_refund_notice", GetRefundNotice, R, LOW, get_refund_notice,
             description="The customer-notification draft of an intent"),
        refund_tool(attempts=attempts, timeout_s=timeout_s),
        Tool("draft_refund_notice", DraftRefundNotice, ToolKind.WRITE, LOW, draft_refund_notice,
             description="Store the customer-notification draft (never sends it)"),
    ])
