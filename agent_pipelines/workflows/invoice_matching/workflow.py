"""Invoice-to-PO matching (finance operations), step by step.

Trigger: a new file in the invoice inbox (sensors/invoices.py). READ the vendor and candidate POs;
PROPOSE the match (model or offline rules); VALIDATE (rules, pre-write suite, dedupe, policy facts);
COMMIT a staged invoice, the PO's invoiced amount and a scheduled payment, each once; VERIFY by
reading back and running the post-write suite. Policy: policy.yaml beside this file."""

from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Connection

from agent_pipelines.framework.tools import ToolRegistry
from agent_pipelines.framework.ledger import WriteReceipt, excess
from agent_pipelines.framework.untrusted import instruction_like
from agent_pipelines.framework.workflow import (
    NeedInput,
    RecordPreview,
    Step,
    Validation,
    Verification,
    Violation,
    Workflow,
    WriteAction,
)
from agent_pipelines.workflows.invoice_matching import matching, prompts, tools
from agent_pipelines.workflows.invoice_matching.models import (
    WORKFLOW,
    InvoiceIntake,
    MatchContext,
    MatchProposal,
    POSnapshot,
)
from assets import expectations
from resources.system_of_record import (
    po_lines,
    purchase_orders,
    scheduled_payments,
    staged_invoices,
    vendors,
)


class InvoiceMatching(Workflow[InvoiceIntake, MatchContext, MatchProposal]):
    name = WORKFLOW
    version = "1.0.0"
    prompt_version = prompts.PROMPT_VERSION
    description = "Match an inbound invoice to its purchase order; stage it and schedule its payment once."
    intake_model = InvoiceIntake
    context_model = MatchContext
    proposal_model = MatchProposal
    policy_file = Path(__file__).with_name("policy.yaml")
    record_tables = (vendors, purchase_orders, po_lines, staged_invoices)
    gold_file = Path(__file__).with_name("gold.yaml")

    def tools(self) -> ToolRegistry:
        return tools.registry()

    # 1. READ ------------------------------------------------------------------------------------------
    def read(self, step: Step, intake: InvoiceIntake) -> MatchContext:
        vendor = step.tools.read("find_vendor", {"ref": intake.vendor_ref}) if intake.vendor_ref else None
        candidates: list[POSnapshot] = []
        if intake.po_number:
            po = step.tools.read("get_purchase_order", {"po_number": intake.po_number})
            candidates = [po] if po else []
        elif vendor:
            candidates = step.tools.read("list_open_purchase_orders", {"vendor_id": vendor.vendor_id})
        staged = None
        if vendor and intake.invoice_number:
            staged = step.tools.read("find_staged_invoice", {"vendor_id": vendor.vendor_id,
                                                             "invoice_number": intake.invoice_number})
        return MatchContext(vendor=vendor, candidates=tuple(candidates), already_staged=staged)

    def batch_key(self, intake: InvoiceIntake) -> str | None:
        # Two copies of one invoice: the second must see the first staged (and be refused as a duplicate).
        return f"invoice:{intake.vendor_ref}:{intake.invoice_number}" if intake.invoice_number else None

    # 2. PROPOSE (the framework calls the model with these messages, or the offline proposer) ----------
    def messages(self, intake: InvoiceIntake, context: MatchContext) -> list[dict[str, str]]:
        return prompts.messages(intake, context)

    def propose_offline(self, intake: InvoiceIntake, context: MatchContext) -> MatchProposal:
        return matching.propose(intake, context)

    # 3. VALIDATE --------------------------------------------------------------------------------------
    def validate(self, step: Step, intake: InvoiceIntake, context: MatchContext,
                 proposal: MatchProposal) -> Validation:
        vendor, ref = context.vendor, intake.invoice_number or intake.source_name
        if vendor is None:
            return _reject("unknown_vendor", f"vendor {intake.vendor_ref!r} is not in the vendor master"
                           if intake.vendor_ref else "the invoice names no vendor")
        if not intake.invoice_number:
            return Validation(need_input=NeedInput(field="invoice_number",
                                                   question=f"What is the invoice number of {intake.source_name}?"))
        if len(intake.invoice_number) > 40:
            return _reject("invoice_number_too_long", f"invoice number {intake.invoice_number[:50]!r}... exceeds 40 chars")
        if context.already_staged and context.already_staged.intent_id != step.intent.intent_id:
            s = context.already_staged
            return _reject("duplicate_invoice", f"{vendor.vendor_id} invoice {intake.invoice_number} is already staged "
                           f"as {s.invoice_id} (intent {s.intent_id})")
        if intake.po_number and not context.candidates:
            return Validation(need_input=NeedInput(field="po_number", question=(
                f"Invoice {ref} names PO {intake.po_number}, which does not exist. Which PO does it bill?")))
        if proposal.po_number is None:
            open_pos = ", ".join(po.po_number for po in context.candidates)
            why = f"has several open POs ({open_pos})" if open_pos else "has no open PO"
            return Validation(need_input=NeedInput(field="po_number", question=(
                f"Invoice {ref} names no PO and {vendor.vendor_id} {why}. Which PO does it bill?")))
        po = next((p for p in context.candidates if p.po_number == proposal.po_number), None)
        if po is None:  # the proposer named a PO that was never a candidate
            return _reject("po_not_a_candidate", f"proposed PO {proposal.po_number} is not among the candidates")
        violations = []
        if po.vendor_id != vendor.vendor_id:
            violations.append(Violation(rule="po_vendor_mismatch",
                                        message=f"{po.po_number} belongs to {po.vendor_id}, not {vendor.vendor_id}"))
        if po.status != "open":
            violations.append(Violation(rule="po_not_open", message=f"{po.po_number} is {po.status}"))
        currency = (intake.currency or vendor.currency).upper()
        if currency != po.currency:
            violations.append(Violation(rule="currency_mismatch",
                                        message=f"invoice is in {currency}, {po.po_number} in {po.currency}"))
        if intake.amount_cents <= 0:
            violations.append(Violation(rule="no_amount", message="the invoice has no positive total"))
        # Recompute the arithmetic whoever proposed it: deterministic code decides, the model suggests.
        matched = matching.matched_amount(intake, po, proposal.line_matches)
        if (matched, intake.amount_cents) != (proposal.matched_po_amount_cents, proposal.invoice_total_cents):
            violations.append(Violation(rule="proposal_arithmetic", message=(
                f"proposal says matched {proposal.matched_po_amount_cents} of {proposal.invoice_total_cents}, "
                f"recomputed {matched} of {intake.amount_cents}")))
        lines = [li.model_dump() | {"line_no": i + 1} for i, li in enumerate(intake.billed_lines())]
        variance = intake.amount_cents - matched
        # Every free-text field is untrusted, not only the memo: an instruction in a line description
        # must reach a human the same way. Each field is scanned alone so no phrase spans two fields.
        texts = (intake.memo, intake.vendor_ref or "", *(li.description for li in intake.lines))
        hostile = [hit for text in texts for hit in instruction_like(text)]
        return Validation(
            violations=tuple(violations),
            checks=(expectations.invoice_lines_pre_write(lines),),
            facts={
                "vendor_status": vendor.status,
                "amount_cents": intake.amount_cents,
                "abs_variance_cents": abs(variance),
                "abs_variance_pct": round(abs(variance) / matched * 100, 3) if matched else 100.0,
                "po_remaining_after_cents": po.total_cents - po.invoiced_cents - intake.amount_cents,
                "instruction_like_text": hostile,
                "short_payment": proposal.payable_cents < intake.amount_cents,
            })

    def preconditions(self, context: MatchContext, proposal: MatchProposal) -> dict:
        po = next((p for p in context.candidates if p.po_number == proposal.po_number), None)
        vendor = context.vendor
        return {"po": po and {"po_number": po.po_number, "version": po.version, "status": po.status},
                "vendor_status": vendor and vendor.status,
                "already_staged": context.already_staged and context.already_staged.invoice_id}

    # 4. COMMIT: the writes, each applied once by the framework through the ledger --------------------
    def plan_writes(self, intent_id: str, intake: InvoiceIntake, context: MatchContext,
                    proposal: MatchProposal) -> list[WriteAction]:
        vendor = context.vendor
        po = next(p for p in context.candidates if p.po_number == proposal.po_number)
        assert vendor is not None and intake.invoice_number is not None
        invoice_id = f"SI-{vendor.vendor_id}-{intake.invoice_number}"
        currency = (intake.currency or vendor.currency).upper()
        due = intake.due_date or (intake.invoice_date or date(2026, 11, 1)) + timedelta(days=vendor.payment_terms_days)
        by_inv = {m.invoice_line: m.po_line_no for m in proposal.line_matches}
        lines = [{"line_no": i + 1, "po_line_no": by_inv.get(i), "sku": li.sku, "description": li.description,
                  "quantity": li.quantity, "unit_price_cents": li.unit_price_cents, "amount_cents": li.amount_cents}
                 for i, li in enumerate(intake.billed_lines())]
        common = {"invoice_id": invoice_id, "vendor_id": vendor.vendor_id, "currency": currency}
        return [
            WriteAction(action="stage_invoice", tool="stage_invoice", params=common | {
                "intent_id": intent_id, "invoice_number": intake.invoice_number, "po_number": po.po_number,
                "amount_cents": intake.amount_cents, "payable_cents": proposal.payable_cents,
                "variance_cents": proposal.variance_cents,
                "invoice_date": intake.invoice_date, "due_date": due, "lines": lines}),
            WriteAction(action="record_po_invoiced", tool="record_po_invoiced", params={
                "po_number": po.po_number, "expected_version": po.version, "add_cents": proposal.payable_cents}),
            WriteAction(action="schedule_payment", tool="schedule_payment", params=common | {
                "intent_id": intent_id, "amount_cents": proposal.payable_cents, "pay_on": due}),
        ]

    def preview_write(self, context: MatchContext, write: WriteAction) -> RecordPreview:
        """Each write against the record READ saw: the PO's invoiced amount and version move; the
        staged invoice and the payment are new records (the context's already_staged says otherwise)."""
        p = write.params
        read = "before: the record as READ saw it (stored context); after: what the write sets"
        if write.tool == "record_po_invoiced":
            po = next((c for c in context.candidates if c.po_number == p["po_number"]), None)
            if po is not None:
                before = {"invoiced_cents": po.invoiced_cents, "version": po.version, "total_cents": po.total_cents}
                return RecordPreview(table="purchase_orders", key=p["po_number"], before=before, after={
                    "invoiced_cents": po.invoiced_cents + p["add_cents"], "version": po.version + 1,
                    "total_cents": po.total_cents}, basis=read)
        if write.tool == "stage_invoice":
            lines = p.get("lines") or []
            staged = context.already_staged
            return RecordPreview(table="staged_invoices", key=p["invoice_id"],
                                 before=staged.model_dump(mode="json") if staged else None,
                                 after={k: v for k, v in p.items() if k != "lines"} | {"lines": len(lines)},
                                 basis=read if staged else
                                 "a new record: READ found no staged invoice with this number")
        if write.tool == "schedule_payment":
            return RecordPreview(table="scheduled_payments", key=f"PAY-{p['invoice_id']}", after=dict(p),
                                 basis="a new record; the payee account comes from the vendor master at commit")
        return super().preview_write(context, write)

    # 5. VERIFY: read back independently and run the post-write suite --------------------------------
    def verify(self, step: Step, intake: InvoiceIntake, context: MatchContext, proposal: MatchProposal,
               receipts: list[WriteReceipt]) -> Verification:
        invoice_id = next(r.key for r in receipts if r.action == "stage_invoice")
        back = step.tools.read("get_staged_invoice", {"invoice_id": invoice_id})
        if back is None:
            return Verification(passed=False, problems=(f"{invoice_id} is not in staged_invoices",))
        inv, pay = back["invoice"], back["payment"]
        problems = []
        if inv["amount_cents"] != intake.amount_cents or inv["po_number"] != proposal.po_number:
            problems.append(f"{invoice_id} reads back as {inv['amount_cents']} on {inv['po_number']}")
        if pay is None or pay["amount_cents"] != proposal.payable_cents:
            problems.append(f"payment for {invoice_id} is {pay and pay['amount_cents']}, "
                            f"expected {proposal.payable_cents}")
        row = ({k: inv[k] for k in ("invoice_id", "intent_id", "vendor_id", "invoice_number", "amount_cents",
                                    "payable_cents")}
               | {"payment_amount_cents": pay and pay["amount_cents"], "line_count": len(back["lines"])})
        return Verification(passed=not problems, problems=tuple(problems),
                            checks=(expectations.staged_invoices_post_write_check([row]),),
                            records={"invoice": invoice_id, "payment": pay and pay["payment_id"],
                                     "po": inv["po_number"]})


    # Audit: duplicates counted from the system of record and the ledger ---------------------------
    def duplicate_writes(self, conn: Connection) -> int:
        si, sp = staged_invoices.c, scheduled_payments.c
        return sum(excess(conn, cols) for cols in (
            [si.intent_id], [si.vendor_id, si.invoice_number], [sp.intent_id], [sp.invoice_id]))


def _reject(rule: str, message: str) -> Validation:
    return Validation(violations=(Violation(rule=rule, message=message),))
