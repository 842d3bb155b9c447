"""Refund, step by step: "My mug arrived broken, please refund order ORD-1001."

Trigger: a new row in refund_requests (sensors/refunds.py). READ the order (captured and refunded
amounts) and its refunds from the payments API, and the other requests for the same order from our
table; PROPOSE the amount and the reason code (model or offline rules); VALIDATE (the order exists; no
duplicate request; an allowed reason; amount ≤ captured − refunded; the pre-write suite; policy facts:
the pack's maximum refund denies, a large amount, some reasons and instruction-like text need a
person); COMMIT the refund through the payments API with the ledger's idempotency key, and store the
customer-notification draft; VERIFY by reading the refund, the order's refunds and the draft back.
Policy: policy.yaml beside this file."""

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from agent_pipelines.framework.external import seed_service
from agent_pipelines.framework.tools import ToolRegistry
from agent_pipelines.framework.ledger import LANDED, WriteReceipt, excess
from agent_pipelines.framework.tables import writes
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
from agent_pipelines.workflows.refund import prompts, tools
from agent_pipelines.workflows.refund.models import (
    ORDER_ID_PATTERN,
    REASON_PATTERN,
    WORKFLOW,
    NoticeSnapshot,
    RefundContext,
    RefundProposal,
    RefundRequestIntake,
    RefundSnapshot,
)
from assets import expectations
from resources.refunds import refund_notices, refund_requests

REFUND_TOOL, NOTICE_TOOL = "create_refund", "draft_refund_notice"
# A request that was refused never refunds anything: it does not make a later one a duplicate.
_REFUSED = frozenset({"rejected_input", "denied", "expired"})
# The offline proposer's reading of a message without a reason code: first match wins.
_REASON_WORDS = (
    ("duplicate_charge", re.compile(r"\b(charged twice|double[- ]charged?|duplicate charge|billed twice)\b", re.IGNORECASE)),
    ("not_received", re.compile(r"\b(never (arrived|came|received)|not (arrived|received)|did ?n[o']t (arrive|get)"
                                r"|lost in (the )?(post|mail|transit))\b", re.IGNORECASE)),
    ("damaged", re.compile(r"\b(broken|damaged|cracked|smashed|shattered|defective|faulty)\b", re.IGNORECASE)),
    ("wrong_item", re.compile(r"\b(wrong (item|size|colou?r|product)|not what I ordered)\b", re.IGNORECASE)),
    ("late_delivery", re.compile(r"\b(arrived|came|delivered) (too )?late\b|\blate delivery\b", re.IGNORECASE)),
)


class Refund(Workflow[RefundRequestIntake, RefundContext, RefundProposal]):
    name = WORKFLOW
    version = "1.0.0"
    prompt_version = prompts.PROMPT_VERSION
    description = ("Refund one order through the payments API: the amount and reason from the request, within "
                   "what was captured and not yet refunded, approved above a threshold, applied once.")
    intake_model = RefundRequestIntake
    context_model = RefundContext
    proposal_model = RefundProposal
    policy_file = Path(__file__).with_name("policy.yaml")
    record_tables = (refund_requests, refund_notices)
    gold_file = Path(__file__).with_name("gold.yaml")
    # Gold cases seed the orders (and their earlier refunds) into the payments service, not our database.
    external_records = ("payments.orders",)
    # The refund call's retry settings (tests lose an answer with one short attempt).
    refund_attempts, refund_timeout_s = 5, 10.0

    def tools(self) -> ToolRegistry:
        return tools.registry(attempts=self.refund_attempts, timeout_s=self.refund_timeout_s)

    def seed_external(self, name: str, rows: list[dict[str, Any]]) -> None:
        seed_service("payments", "/_admin/orders", rows)

    @property
    def allowed_reasons(self) -> tuple[str, ...]:
        """The pack's list: the one_of of create_refund's `reason` constraint (the gateway enforces it too)."""
        return tuple(self.policy.constraints[REFUND_TOOL]["reason"].one_of or ())

    @property
    def notice_status(self) -> str:
        """A draft for a person to send, unless the pack's hand_off section allows sending."""
        return "ready_to_send" if self.policy.hand_off.send_customer_notifications else "draft"

    # 1. READ ------------------------------------------------------------------------------------------
    def read(self, step: Step, intake: RefundRequestIntake) -> RefundContext:
        order_id = _well_formed(intake.evidence_order_id, ORDER_ID_PATTERN)
        order = step.tools.read("get_order", {"order_id": order_id}) if order_id else None
        refunds = step.tools.read("list_order_refunds", {"order_id": order_id}) if order else []
        earlier = step.tools.read("list_order_requests", {"order_id": order_id}) if order_id else []
        return RefundContext(order_id=intake.evidence_order_id, order=order, refunds=tuple(refunds),
                             earlier_requests=tuple(earlier))

    def batch_key(self, intake: RefundRequestIntake) -> str | None:
        # Two requests for one order: the second must see the first (duplicate, remaining amount).
        order = intake.evidence_order_id
        return f"order:{order}" if order else None

    # 2. PROPOSE ---------------------------------------------------------------------------------------
    def messages(self, intake: RefundRequestIntake, context: RefundContext) -> list[dict[str, str]]:
        return prompts.messages(intake, context, self.allowed_reasons)

    def propose_offline(self, intake: RefundRequestIntake, context: RefundContext) -> RefundProposal:
        return propose_refund(intake, context)

    # 3. VALIDATE --------------------------------------------------------------------------------------
    def validate(self, step: Step, intake: RefundRequestIntake, context: RefundContext,
                 proposal: RefundProposal) -> Validation:
        if len(intake.named_orders) > 1 and not intake.order_id:
            return _reject("more_than_one_order", f"the request names {len(intake.named_orders)} orders "
                           f"({', '.join(intake.named_orders)}); one request refunds one order")
        order_id, order = context.order_id, context.order
        if not _well_formed(order_id, ORDER_ID_PATTERN):
            got = f"{order_id!r} is not an order number. " if order_id else ""
            return Validation(need_input=NeedInput(field="order_id", question=(
                f"{got}Which order (ORD-…) should be refunded? It is on the order confirmation e-mail.")))
        if order is None:
            return _reject("order_not_found", f"the payments service has no order {order_id}")
        refunded_here = [r for r in context.refunds if r.reference == intake.request_id]
        if refunded_here:
            return _reject("duplicate_request", f"request {intake.request_id} was already refunded on {order_id} "
                           f"({refunded_here[0].id}, {_money(refunded_here[0].amount_cents)})")
        twin = next((e for e in context.earlier_requests
                     if e.seq < intake.seq and e.request_id != intake.request_id and e.state not in _REFUSED
                     and e.amount_cents == intake.amount_cents), None)
        if twin is not None:
            return _reject("duplicate_request", f"request {twin.request_id} already asks to refund "
                           f"{_money(twin.amount_cents) if twin.amount_cents else 'the rest of'} order {order_id} "
                           f"({twin.state or 'not yet started'}); one refund per request")
        remaining = order.remaining_cents
        if remaining == 0:
            return _reject("nothing_left_to_refund", f"order {order_id} captured {_money(order.captured_cents)} and "
                           f"all of it is already refunded")
        if proposal.order_id != order_id:
            return _reject("wrong_order", f"the proposal refunds {proposal.order_id!r}, not the request's order "
                           f"{order_id}")
        if proposal.reason_code is None:
            return Validation(need_input=NeedInput(field="reason", question=(
                f"Why should order {order_id} be refunded? One of: {', '.join(self.allowed_reasons)}.")))
        violations: list[Violation] = []
        if proposal.reason_code not in self.allowed_reasons:
            violations.append(Violation(rule="reason_not_allowed", message=(
                f"reason {proposal.reason_code!r} is not one the policy allows: {', '.join(self.allowed_reasons)}")))
        if proposal.amount_cents <= 0:
            violations.append(Violation(rule="invalid_amount", message="the proposal refunds nothing"))
        elif proposal.amount_cents > remaining:
            violations.append(Violation(rule="amount_exceeds_remaining", message=(
                f"{_money(proposal.amount_cents)} is more than is left to refund on {order_id}: captured "
                f"{_money(order.captured_cents)} − refunded {_money(order.refunded_cents)} = {_money(remaining)}")))
        if violations:
            return Validation(violations=tuple(violations))
        return Validation(
            checks=(expectations.refund_pre_write(proposal.amount_cents, remaining, order.captured_cents),),
            facts={
                "order_id": order_id,
                "order_found": True,
                "amount_cents": proposal.amount_cents,
                "reason_code": proposal.reason_code,
                "captured_cents": order.captured_cents,
                "remaining_cents": remaining,
                "remaining_after_cents": remaining - proposal.amount_cents,
                "full_refund": proposal.amount_cents == order.captured_cents,
                "earlier_refunds": len(context.refunds),
                "instruction_like_text": instruction_like(intake.text),
            })

    def preconditions(self, context: RefundContext, proposal: RefundProposal) -> dict[str, Any]:
        # A refund made since READ (by hand, by another request) changes what is left: nothing is written.
        o = context.order
        return {"order": o and {"captured_cents": o.captured_cents, "refunded_cents": o.refunded_cents},
                "refunds": sorted(r.id for r in context.refunds)}

    # 4. COMMIT: the refund through the payments API, then the notice draft ---------------------------
    def plan_writes(self, intent_id: str, intake: RefundRequestIntake, context: RefundContext,
                    proposal: RefundProposal) -> list[WriteAction]:
        order = context.order
        assert order is not None and proposal.order_id and proposal.reason_code
        plan = [WriteAction(action="refund", tool=REFUND_TOOL, params={
            "order_id": proposal.order_id, "amount_cents": proposal.amount_cents, "reason": proposal.reason_code,
            "reference": intake.request_id})]
        # The draft goes to the address the payments API holds for the order, never one the request
        # gives; an order without one gets no draft (support contacts the customer its own way).
        if order.customer_email:
            plan.append(WriteAction(action="notice", tool=NOTICE_TOOL, params={
                "intent_id": intent_id, "request_id": intake.request_id, "order_id": proposal.order_id,
                "to_address": order.customer_email, "subject": f"Your refund for order {proposal.order_id}",
                "body": notice_body(proposal, order.currency), "status": self.notice_status}))
        return plan

    def preview_write(self, context: RefundContext, write: WriteAction) -> RecordPreview:
        p, o = write.params, context.order
        if write.tool == REFUND_TOOL and o is not None:
            return RecordPreview(table="payments.orders", key=o.id,
                                 before={"captured_cents": o.captured_cents, "refunded_cents": o.refunded_cents},
                                 after={"captured_cents": o.captured_cents,
                                        "refunded_cents": o.refunded_cents + p["amount_cents"]},
                                 basis="the order as READ found it in the payments API, and this refund added")
        return super().preview_write(context, write)

    # 5. VERIFY: read the refund, the order's refunds and the draft back --------------------------------
    def verify(self, step: Step, intake: RefundRequestIntake, context: RefundContext, proposal: RefundProposal,
               receipts: list[WriteReceipt]) -> Verification:
        refund_id = next(r.key for r in receipts if r.action == "refund")
        # Reads that READ and commit's precondition re-read did not make (the same call a third time in
        # one run counts as a retry loop): the refund by id, and the order's refunds for this request.
        back: RefundSnapshot | None = step.tools.read("get_refund", {"refund_id": refund_id})
        mine: list[RefundSnapshot] = step.tools.read("list_order_refunds", {"order_id": proposal.order_id,
                                                                            "reference": intake.request_id})
        notice: NoticeSnapshot | None = step.tools.read("get_refund_notice", {"intent_id": step.intent.intent_id})
        problems: list[str] = []
        if back is None:
            problems.append(f"refund {refund_id} is not in the payments service")
        elif (back.order_id, back.amount_cents, back.reason, back.reference, back.status) != (
                proposal.order_id, proposal.amount_cents, proposal.reason_code, intake.request_id, "succeeded"):
            problems.append(f"refund {refund_id} reads back as {back.amount_cents} on {back.order_id} "
                            f"({back.reason}, {back.reference}, {back.status})")
        if [r.id for r in mine] != [refund_id]:
            problems.append(f"order {proposal.order_id} has refunds {[r.id for r in mine]} for request "
                            f"{intake.request_id}, expected exactly [{refund_id}]")
        drafted = any(r.action == "notice" for r in receipts)
        if drafted and notice is None:
            problems.append(f"no notice draft for {step.intent.intent_id}")
        elif notice is not None and notice.status != self.notice_status:
            problems.append(f"the notice is {notice.status}, not {self.notice_status} as the pack says")
        order = context.order
        assert order is not None
        # The order's totals: captured as READ saw it (the API has no way to change it), refunded as
        # READ saw it plus this request's refunds read back. The asset check reads the whole order.
        refunded = order.refunded_cents + sum(r.amount_cents for r in mine)
        rows = [{"refund_id": r.id, "order_id": r.order_id, "reference": r.reference, "amount_cents": r.amount_cents,
                 "status": r.status, "captured_cents": order.captured_cents, "refunded_cents": refunded} for r in mine]
        return Verification(passed=not problems, problems=tuple(problems),
                            checks=(expectations.payments_refunds_post_write_check(rows),),
                            records={"refund": refund_id, "order": proposal.order_id,
                                     "amount_cents": back and back.amount_cents, "order_refunded_cents": refunded,
                                     "notice": notice and notice.status})

    # Audit: duplicates counted from the ledger and our notices ----------------------------------------
    def duplicate_writes(self, conn: Connection) -> int:
        """More than one landed refund per request in the ledger (any of its versions: each version is
        an intent, and a request is refunded once), and more than one notice draft per intent."""
        w = writes.c
        refs = conn.execute(select(w.intent_id).where(w.workflow == self.name, w.tool == REFUND_TOOL,
                                                      w.status.in_(LANDED))).scalars().all()
        # A request's versions are separate intents (workflow:request@version): one refund per request.
        per_request: dict[str, int] = {}
        for intent_id in refs:
            request = intent_id.rsplit("@", 1)[0]
            per_request[request] = per_request.get(request, 0) + 1
        return sum(n - 1 for n in per_request.values() if n > 1) + excess(conn, [refund_notices.c.intent_id])


# -- the offline proposer: the same typed proposal a model would return, from rules ---------------------
def propose_refund(intake: RefundRequestIntake, context: RefundContext) -> RefundProposal:
    """The amount asked for (or what is left when none is asked), the reason picked on the form (or read
    from the message's words); anything addressed to the agent is only reported in the rationale."""
    order = context.order
    remaining = order.remaining_cents if order else 0
    amount = intake.amount_cents if intake.amount_cents is not None else remaining
    reason = re.sub(r"[\s-]+", "_", (intake.reason or "").strip().lower()) or reason_from_text(intake.text)
    notes = []
    if order is None:
        notes.append("no order was found for the request, so nothing can be refunded")
    else:
        notes.append(f"order {order.id} captured {_money(order.captured_cents)}, refunded "
                     f"{_money(order.refunded_cents)}, {_money(remaining)} left; the customer asks for "
                     f"{_money(intake.amount_cents) if intake.amount_cents is not None else 'the rest'}")
    notes.append(f"reason {reason}" if reason else "no reason could be told from the request")
    hits = instruction_like(intake.text)
    if hits:
        notes.append(f"the message contains text addressed to the agent ({'; '.join(hits)[:200]}); it is data and "
                     f"was not acted on")
    return RefundProposal(order_id=_well_formed(context.order_id, ORDER_ID_PATTERN), amount_cents=max(0, amount),
                          reason_code=_well_formed(reason, REASON_PATTERN), rationale="; ".join(notes)[:2000])


def reason_from_text(text: str) -> str | None:
    return next((code for code, words in _REASON_WORDS if words.search(text or "")), None)


def notice_body(proposal: RefundProposal, currency: str) -> str:
    """The customer's notification: facts only (never the customer's own text)."""
    return (f"Hello,\n\nwe have refunded {proposal.amount_cents / 100:.2f} {currency} for order {proposal.order_id} "
            f"(reason: {(proposal.reason_code or '').replace('_', ' ')}). It reaches your account within 5 to 10 "
            f"business days.\n\nKind regards,\nCustomer support")


def _money(cents: int | None) -> str:
    return "nothing" if cents is None else f"{cents / 100:,.2f}"


def _well_formed(value: str | None, pattern: str) -> str | None:
    return value if value and re.fullmatch(pattern, value) else None


def _reject(rule: str, message: str) -> Validation:
    return Validation(violations=(Violation(rule=rule, message=message),))
