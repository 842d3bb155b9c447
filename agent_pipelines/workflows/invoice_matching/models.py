"""Typed state of invoice-to-PO matching: the invoice as received (intake), what the system of record
says (context), and the match the model proposes (proposal)."""

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_pipelines.framework.workflow import StepModel

WORKFLOW = "invoice_matching"


# -- intake: parsed from a messy file; anything missing stays None and validation asks for it --------
class InvoiceLine(StepModel):
    description: str
    sku: str | None = None
    quantity: float
    unit_price_cents: int
    amount_cents: int


class InvoiceIntake(StepModel):
    source_name: str
    format: Literal["json", "csv", "text"]
    vendor_ref: str | None = None  # vendor id or name as written on the invoice
    invoice_number: str | None = None
    po_number: str | None = None
    currency: str | None = None
    invoice_date: date | None = None
    due_date: date | None = None
    total_cents: int | None = None
    lines: tuple[InvoiceLine, ...] = ()
    memo: str = ""
    parse_warnings: tuple[str, ...] = ()

    @property
    def amount_cents(self) -> int:
        """The billed amount: the stated total, else the sum of the lines."""
        return self.total_cents if self.total_cents is not None else sum(li.amount_cents for li in self.lines)

    def billed_lines(self) -> tuple[InvoiceLine, ...]:
        """The line items, or one line for the whole amount when the invoice states only a total."""
        if self.lines:
            return self.lines
        return (InvoiceLine(description="(invoice total; no line items)", quantity=1.0,
                            unit_price_cents=self.amount_cents, amount_cents=self.amount_cents),)


# -- context: read through read-only tools -------------------------------------------------------------
class VendorSnapshot(StepModel):
    vendor_id: str
    name: str
    status: str
    currency: str
    payment_terms_days: int


class POLineSnapshot(StepModel):
    line_no: int
    sku: str
    description: str
    quantity: float
    unit_price_cents: int


class POSnapshot(StepModel):
    po_number: str
    vendor_id: str
    status: str
    currency: str
    total_cents: int
    invoiced_cents: int
    version: int
    lines: tuple[POLineSnapshot, ...]


class StagedRef(StepModel):
    invoice_id: str
    intent_id: str
    po_number: str
    amount_cents: int


class MatchContext(StepModel):
    vendor: VendorSnapshot | None
    candidates: tuple[POSnapshot, ...]  # the PO named on the invoice, or the vendor's open POs
    already_staged: StagedRef | None  # same vendor and invoice number, staged before


# -- proposal: what the model returns (instructor response_model); it decides nothing -------------------
class LineMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    invoice_line: int = Field(ge=0, description="0-based index of the invoice line")
    po_line_no: int | None = Field(description="line_no of the matching PO line, or null if none matches")


class MatchProposal(BaseModel):
    """The purchase order this invoice bills and how its lines map onto the PO's lines."""

    model_config = ConfigDict(extra="forbid")  # a model output cannot add a field (a tool, an approval)

    po_number: str | None = Field(description="po_number of one of the candidate POs, or null if none fits")
    line_matches: list[LineMatch] = Field(description="one entry per invoice line, in order")
    matched_po_amount_cents: int = Field(ge=0, description="sum of invoice quantity x PO unit price over matched lines")
    variance_cents: int = Field(description="invoice total minus matched_po_amount_cents")
    rationale: str = Field(max_length=2000, description="why this PO and these line matches")
    invoice_total_cents: int = Field(ge=0, description="the invoice total in cents")
    pay_amount_cents: int | None = Field(None, ge=1, description=(
        "amount to pay when less than the invoice total (disputed lines); null pays the total. "
        "A short payment always goes to a human approver."))

    @model_validator(mode="after")
    def _arithmetic(self) -> "MatchProposal":
        # A wrong subtraction is a validation error, so instructor re-asks instead of us trusting it.
        if self.variance_cents != self.invoice_total_cents - self.matched_po_amount_cents:
            raise ValueError("variance_cents must equal invoice_total_cents - matched_po_amount_cents")
        if self.pay_amount_cents is not None and self.pay_amount_cents > self.invoice_total_cents:
            raise ValueError("pay_amount_cents cannot exceed invoice_total_cents")
        return self

    @property
    def payable_cents(self) -> int:
        return self.pay_amount_cents if self.pay_amount_cents is not None else self.invoice_total_cents
