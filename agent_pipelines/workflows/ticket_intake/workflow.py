"""Support ticket intake and triage, step by step.

Trigger: a new row in inbound_messages (sensors/tickets.py). READ the requester by sender address,
their open tickets, the products and the teams; PROPOSE a triage (model or offline rules); VALIDATE
(who sent it, which product, the duplicate is the requester's open ticket, the dedupe recomputed,
policy facts); COMMIT a new ticket or an entry on the open one, once; VERIFY by reading the ticket
back. Policy: policy.yaml beside this file."""

from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from agent_pipelines.framework.tools import ToolRegistry
from agent_pipelines.framework.ledger import WriteReceipt, excess
from agent_pipelines.framework.untrusted import instruction_like
from agent_pipelines.framework.workflow import (
    NeedInput,
    Step,
    Validation,
    Verification,
    Violation,
    Workflow,
    WriteAction,
)
from agent_pipelines.workflows.ticket_intake import prompts, tools, triage
from agent_pipelines.workflows.ticket_intake.models import (
    WORKFLOW,
    MessageIntake,
    TicketRecord,
    TriageContext,
    TriageProposal,
)
from resources.tickets import products, requesters, teams, ticket_messages, tickets


class TicketIntake(Workflow[MessageIntake, TriageContext, TriageProposal]):
    name = WORKFLOW
    version = "1.0.0"
    prompt_version = prompts.PROMPT_VERSION
    description = "Triage an inbound support message; open a ticket or add it to the requester's open one, once."
    intake_model = MessageIntake
    context_model = TriageContext
    proposal_model = TriageProposal
    policy_file = Path(__file__).with_name("policy.yaml")
    record_tables = (teams, products, requesters, tickets, ticket_messages)
    gold_file = Path(__file__).with_name("gold.yaml")

    def tools(self) -> ToolRegistry:
        return tools.registry()

    # 1. READ ------------------------------------------------------------------------------------------
    def read(self, step: Step, intake: MessageIntake) -> TriageContext:
        email = intake.sender_email
        # No address, no one to look up: VALIDATE asks who sent it.
        requester = step.tools.read("find_requester", {"email": email}) if "@" in email else None
        open_tickets = (step.tools.read("list_open_tickets", {"requester_id": requester.requester_id})
                        if requester else [])
        return TriageContext(requester=requester, open_tickets=tuple(open_tickets),
                             products=tuple(step.tools.read("list_products", {})),
                             teams=tuple(step.tools.read("list_teams", {})))

    def batch_key(self, intake: MessageIntake) -> str | None:
        # A requester's messages depend on each other: a later one joins the ticket an earlier one opens.
        return f"sender:{intake.sender_email.strip().lower()}" if intake.sender_email else None

    # 2. PROPOSE (the framework calls the model with these messages, or the offline proposer) ----------
    def messages(self, intake: MessageIntake, context: TriageContext) -> list[dict[str, str]]:
        return prompts.messages(intake, context)

    def propose_offline(self, intake: MessageIntake, context: TriageContext) -> TriageProposal:
        return triage.propose(intake, context)

    # 3. VALIDATE --------------------------------------------------------------------------------------
    def validate(self, step: Step, intake: MessageIntake, context: TriageContext,
                 proposal: TriageProposal) -> Validation:
        requester = context.requester
        # Questions are keyed by the intake field their answer replaces (`sender`, `product`), so an
        # answer resumes the intent with the corrected message and READ runs again.
        if requester is None:
            who = intake.sender_email or "the sender of this message"
            return Validation(need_input=NeedInput(field="sender", question=(
                f"We could not find a customer account for {who}. Which registered e-mail address of your "
                f"company should we file this request under?")))
        if not (intake.subject.strip() or intake.body.strip()):
            return _reject("empty_message", f"message {intake.message_id} has neither a subject nor a body")
        target = context.open_ticket(proposal.duplicate_of)
        if proposal.duplicate_of and target is None:
            return _reject("duplicate_not_open", f"{proposal.duplicate_of} is not an open ticket of "
                           f"{requester.requester_id}; a message can only join the requester's own open ticket")
        # A message that joins a ticket keeps that ticket's product; a new ticket needs one named.
        product_id = target.product_id if target else proposal.product_id
        if product_id is None:
            return Validation(need_input=NeedInput(field="product", question=(
                f"Which product is this about: {_one_of([p.name for p in context.products])}?")))
        if context.product(product_id) is None:
            return _reject("product_unknown", f"proposed product {product_id!r} is not in the product list")
        # Recompute the dedupe whoever proposed the triage: deterministic code decides, the model suggests.
        dup = triage.find_duplicate(intake, context.open_tickets)
        return Validation(facts={
            "action": "append_to_ticket" if target else "create_ticket",
            "team_known": proposal.team_id in {t.team_id for t in context.teams},
            "dedupe_disagrees": proposal.duplicate_of != (dup and dup.ticket_id),
            "dedupe_match": dup and dup.model_dump(),
            # Appending never changes a ticket's priority, so only a new urgent ticket pages anyone.
            "urgent_requester_org": requester.org if proposal.priority == "urgent" and target is None else "",
            # Recorded and put on the ticket for a human; it blocks nothing: there is no tool that could
            # act on such text beyond filing this one message.
            "instruction_like_text": instruction_like(intake.text),
        })

    def preconditions(self, context: TriageContext, proposal: TriageProposal) -> dict[str, Any]:
        r, target = context.requester, context.open_ticket(proposal.duplicate_of)
        return {"requester": r and r.model_dump(),
                "duplicate_of": target and {"ticket_id": target.ticket_id, "status": target.status,
                                            "requester_id": target.requester_id},
                # a new ticket was deduped against exactly these; one opened since means re-triage
                "open_tickets": None if target else sorted(t.ticket_id for t in context.open_tickets)}

    # 4. COMMIT: one write, applied once by the framework through the ledger ---------------------------
    def plan_writes(self, intent_id: str, intake: MessageIntake, context: TriageContext,
                    proposal: TriageProposal) -> list[WriteAction]:
        requester = context.requester
        assert requester is not None
        hits = instruction_like(intake.text)
        common: dict[str, Any] = {
            "intent_id": intent_id, "message_id": intake.message_id, "requester_id": requester.requester_id,
            "body": intake.body, "attachments": [a.model_dump() for a in intake.attachments],
            "flags": {"instruction_like_text": hits} if hits else {}}
        if proposal.duplicate_of:
            return [WriteAction(action="append_to_ticket", tool="append_to_ticket",
                                params=common | {"ticket_id": proposal.duplicate_of})]
        return [WriteAction(action="create_ticket", tool="create_ticket", params=common | {
            "product_id": proposal.product_id, "subject": intake.subject.strip()[:500] or proposal.summary,
            "category": proposal.category, "priority": proposal.priority, "team_id": proposal.team_id,
            "summary": proposal.summary})]

    # 5. VERIFY: read the ticket back through a read tool ---------------------------------------------
    def verify(self, step: Step, intake: MessageIntake, context: TriageContext, proposal: TriageProposal,
               receipts: list[WriteReceipt]) -> Verification:
        intent_id, requester = step.intent.intent_id, context.requester
        assert requester is not None
        created = next((r for r in receipts if r.action == "create_ticket"), None)
        ticket_id = created.key if created else proposal.duplicate_of
        back: TicketRecord | None = step.tools.read("get_ticket", {"ticket_id": ticket_id})
        if back is None:
            return Verification(passed=False, problems=(f"{ticket_id} is not in tickets",))
        problems = []
        mine = [m for m in back.messages if m.message_id == intake.message_id]
        if len(mine) != 1 or mine[0].intent_id != intent_id:
            problems.append(f"{ticket_id} holds message {intake.message_id} {len(mine)} time(s), "
                            f"intents {[m.intent_id for m in mine]}")
        t = back.ticket
        if t.requester_id != requester.requester_id:
            problems.append(f"{ticket_id} belongs to {t.requester_id}, not {requester.requester_id}")
        if created:
            want = (proposal.category, proposal.priority, proposal.team_id, proposal.product_id, "open", intent_id)
            got = (t.category, t.priority, t.team_id, t.product_id, t.status, back.created_by_intent)
            if got != want:
                problems.append(f"{ticket_id} reads back as {got}, expected {want}")
        return Verification(passed=not problems, problems=tuple(problems),
                            records={"ticket": ticket_id, "action": "create" if created else "append",
                                     "messages": len(back.messages), "team": t.team_id, "priority": t.priority,
                                     "flags": back.flags})

    # Audit: duplicates counted from the system of record ----------------------------------------------
    def duplicate_writes(self, conn: Connection) -> int:
        t, m = tickets.c, ticket_messages.c
        return (excess(conn, [t.created_by_intent], t.created_by_intent.is_not(None))
                + excess(conn, [m.message_id])
                + excess(conn, [m.intent_id], m.intent_id.is_not(None))
                # two open tickets the workflow opened for one requester under the very same subject
                + excess(conn, [t.requester_id, t.subject], t.status == "open", t.created_by_intent.is_not(None)))


def _one_of(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _reject(rule: str, message: str) -> Validation:
    return Validation(violations=(Violation(rule=rule, message=message),))
