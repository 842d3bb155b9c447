"""Typed state of a refund: the request as the customer submitted it (intake), what the payments API
and our own records say about the order (context), and the refund the model proposes (proposal).

The proposal can express exactly one thing: refund this much of this order, for this reason. Which
reasons exist is the policy pack's list (the `create_refund.reason` constraint), checked by VALIDATE
and again by the gateway on the write; a model output with another field fails validation."""

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from agent_pipelines.framework.workflow import StepModel

WORKFLOW = "refund"
ORDER_ID_PATTERN = r"ORD-[A-Z0-9]{1,12}"
REASON_PATTERN = r"[a-z][a-z_]{0,31}"
_ORDER_IDS = re.compile(rf"\b{ORDER_ID_PATTERN}\b", re.IGNORECASE)
MAX_TEXT_CHARS = 20_000


def order_ids_in(text: str) -> list[str]:
    """Distinct order ids written in `text`, upper-cased, in order of appearance."""
    return list(dict.fromkeys(m.group(0).upper() for m in _ORDER_IDS.finditer(text or "")))


# -- intake: one row of refund_requests, as the sensor read it ------------------------------------------
class RefundRequestIntake(StepModel):
    seq: int
    request_id: str = Field(min_length=1, max_length=64)
    version: int = 1
    order_id: str | None = Field(None, max_length=64)  # from the form; None when the customer left it out
    customer_email: str = Field("", max_length=254)
    # what the customer asks for; None: everything that is left (beyond ±100,000.00 the row is refused)
    amount_cents: int | None = Field(None, ge=-10_000_000, le=10_000_000)
    reason: str | None = Field(None, max_length=64)  # the reason picked on the form, if any
    text: str = Field("", max_length=MAX_TEXT_CHARS)  # the customer's message: untrusted
    submitted_at: datetime | None = None

    @property
    def named_orders(self) -> list[str]:
        field = [self.order_id.strip().upper()] if self.order_id and self.order_id.strip() else []
        return list(dict.fromkeys(field + order_ids_in(self.text)))

    @property
    def evidence_order_id(self) -> str | None:
        """The order this request is about: the form field, else the only order id in the text."""
        named = self.named_orders
        return named[0] if len(named) == 1 or (named and self.order_id) else None


# -- context: read through read-only tools (the payments API, our request table) -------------------------
class OrderSnapshot(StepModel):
    id: str
    captured_cents: int
    refunded_cents: int
    currency: str = "USD"
    customer_email: str = ""

    @property
    def remaining_cents(self) -> int:
        return max(0, self.captured_cents - self.refunded_cents)


class RefundSnapshot(StepModel):
    id: str
    order_id: str
    amount_cents: int
    reason: str
    reference: str = ""
    status: str
    idempotency_key: str | None = None


class EarlierRequest(StepModel):
    """Another refund request for the same order, with the state of its intent (None: not registered yet)."""

    request_id: str
    version: int
    seq: int
    amount_cents: int | None
    state: str | None


class NoticeSnapshot(StepModel):
    intent_id: str
    request_id: str
    order_id: str
    to_address: str
    subject: str
    status: str


class RefundContext(StepModel):
    order_id: str | None  # the evidence order id READ looked up (None: the request names none)
    order: OrderSnapshot | None  # None: the payments API has no such order
    refunds: tuple[RefundSnapshot, ...] = ()  # the order's earlier refunds, from the payments API
    earlier_requests: tuple[EarlierRequest, ...] = ()  # other requests for the order in refund_requests


# -- proposal: what the model returns (instructor response_model); it decides nothing -------------------
class RefundProposal(BaseModel):
    """One refund of one order: how much, and the reason code."""

    model_config = ConfigDict(extra="forbid")
    order_id: str | None = Field(pattern=rf"^{ORDER_ID_PATTERN}$",
                                 description="the order to refund, e.g. ORD-1001; null if the records name none")
    amount_cents: int = Field(ge=0, le=10_000_000, description="the amount to refund, in cents")
    reason_code: str | None = Field(pattern=rf"^{REASON_PATTERN}$",
                                    description="one of the allowed reason codes; null when the request gives none")
    rationale: str = Field(max_length=2000, description="why this amount and reason, from the records given")
