"""CRM hygiene, step by step: "this deal says 'qualification, next step: send deck' but the notes say the
proposal went out last week and legal review starts Monday".

Trigger: the daily scan (sensors/crm.py) registers one intent per stale opportunity, identified by the
opportunity id and the version it saw. READ the opportunity (with its version) and its activity notes
from the CRM API; PROPOSE the new stage and next step from the notes (model or offline rules); VALIDATE
(the record is still the one the scan saw, a known stage and an allowed move, something to change, a
next step known or asked for; owner and amount changes, closing a deal and notes that address the agent
go to a person, per policy.yaml); COMMIT one PATCH with If-Match on the version READ saw, so a record
changed meanwhile is refused by the CRM (412) and the intent needs attention; VERIFY by reading the
opportunity and its history back."""

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

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
from agent_pipelines.services.local import seed
from agent_pipelines.workflows.crm_hygiene import expectations, prompts, tools
from agent_pipelines.workflows.crm_hygiene.models import (
    CLOSED,
    STAGES,
    TRANSITIONS,
    WORKFLOW,
    CrmContext,
    HygieneProposal,
    Opportunity,
    StaleOpportunity,
)

TERMS = ("owner", "amount_cents")  # commercial terms: only update_opportunity_terms carries them


class CrmHygiene(Workflow[StaleOpportunity, CrmContext, HygieneProposal]):
    name = WORKFLOW
    version = "1.0.0"
    prompt_version = prompts.PROMPT_VERSION
    description = ("Bring a stale opportunity's stage and next step up to date with its activity notes, in the CRM, "
                   "once, with If-Match; owner and amount never change without a person.")
    intake_model = StaleOpportunity
    context_model = CrmContext
    proposal_model = HygieneProposal
    policy_file = Path(__file__).with_name("policy.yaml")
    gold_file = Path(__file__).with_name("gold.yaml")
    # The CRM's records a gold case brings (framework/gold.py): seeded through its admin endpoint and API.
    external_records = ("crm.opportunities", "crm.notes")

    def tools(self) -> ToolRegistry:
        return tools.registry()

    def seed_external(self, name: str, rows: list[dict[str, Any]]) -> None:
        if name == "crm.opportunities":
            seed("crm", "/_admin/opportunities", rows)
            return
        for note in rows:  # notes are written the way a salesperson writes them: through the API
            seed("crm", f"/opportunities/{note['opportunity_id']}/activities",
                 {"kind": "note", "subject": note["subject"], "body": note.get("body", "")})  # type: ignore[arg-type]

    # 1. READ ------------------------------------------------------------------------------------------
    def read(self, step: Step, intake: StaleOpportunity) -> CrmContext:
        ref = {"opportunity_id": intake.opportunity_id}
        opp = step.tools.read("get_opportunity", ref)
        history = step.tools.read("list_activities", ref) if opp else None
        return CrmContext(opportunity=opp, notes=history.notes_since_update() if history else (),
                          updates=len(history.updates) if history else 0)

    def batch_key(self, intake: StaleOpportunity) -> str | None:
        return f"opportunity:{intake.opportunity_id}"  # two versions of one record never share a batch

    # 2. PROPOSE ---------------------------------------------------------------------------------------
    def messages(self, intake: StaleOpportunity, context: CrmContext) -> list[dict[str, str]]:
        return prompts.messages(intake, context)

    def propose_offline(self, intake: StaleOpportunity, context: CrmContext) -> HygieneProposal:
        return from_notes(intake, context)

    def resume_from(self, answered_field: str) -> str:
        return "propose"  # the owner's next step changes the proposal, not what READ saw

    # 3. VALIDATE --------------------------------------------------------------------------------------
    def validate(self, step: Step, intake: StaleOpportunity, context: CrmContext,
                 proposal: HygieneProposal) -> Validation:
        opp = context.opportunity
        if opp is None:
            return _reject("opportunity_not_found", f"the CRM has no opportunity {intake.opportunity_id}: it was "
                           f"removed after the scan; nothing to update")
        if opp.version != intake.version:
            return _reject("changed_since_scan", f"{opp.id} is at version {opp.version}, not {intake.version} as the "
                           f"scan saw it: someone updated it since; the next scan looks at the new version")
        if opp.stage in CLOSED:
            return _reject("opportunity_closed", f"{opp.id} is {opp.stage}: a closed opportunity is not reopened or "
                           f"edited by hygiene")
        if proposal.stage is not None and proposal.stage not in STAGES:
            return _reject("unknown_stage", f"{proposal.stage!r} is not a stage; stages: {', '.join(STAGES)}")
        if proposal.stage is not None and proposal.stage != opp.stage and proposal.stage not in TRANSITIONS.get(
                opp.stage or "", frozenset()):
            allowed = sorted(TRANSITIONS.get(opp.stage or "", frozenset())) or "none"
            return _reject("invalid_stage_transition", f"{opp.id} cannot move from {opp.stage} to {proposal.stage}; "
                           f"allowed from {opp.stage}: {allowed}")
        changes = proposal.changes(opp)
        if not (opp.next_step or "").strip() and "next_step" not in changes:
            return Validation(need_input=NeedInput(field="next_step_hint", question=(
                f"{opp.id} ({opp.stage}, owner {opp.owner}) has no next step and its notes name none. What is the "
                f"next step? The stage and next step are updated together.")))
        if not changes:
            return _reject("nothing_to_change", f"the notes of {opp.id} do not change its stage ({opp.stage}) or next "
                           f"step ({opp.next_step!r}); the record is left as it is")
        amount_pct = _pct(opp.amount_cents, changes.get("amount_cents"))
        hits = [h for n in context.notes for h in instruction_like(n.text)]
        return Validation(facts={
            "opportunity_id": opp.id,
            "base_version": opp.version,
            "fields_changed": sorted(changes),
            "stage_change": f"{opp.stage}->{changes['stage']}" if "stage" in changes else None,
            "closes_opportunity": changes.get("stage") in CLOSED,
            "changes_owner": "owner" in changes,
            "changes_amount": "amount_cents" in changes,
            "amount_change_pct": amount_pct,
            "instruction_like_text": hits,
        })

    # 4. COMMIT: one PATCH, If-Match on the version READ saw; the CRM refuses it (412) if that moved --------
    # No `preconditions()`: the If-Match header is the precondition, checked by the CRM itself at the write
    # (a re-read before it would only narrow the window, and a 412 ends the intent in needs_attention).
    def plan_writes(self, intent_id: str, intake: StaleOpportunity, context: CrmContext,
                    proposal: HygieneProposal) -> list[WriteAction]:
        opp = context.opportunity
        assert opp is not None
        changes = proposal.changes(opp)
        tool = "update_opportunity_terms" if any(f in changes for f in TERMS) else "update_opportunity"
        return [WriteAction(action="update", tool=tool,
                            params={"opportunity_id": opp.id, "base_version": opp.version, **changes})]

    def preview_write(self, context: CrmContext, write: WriteAction) -> RecordPreview:
        opp = context.opportunity
        fields = [f for f in write.params if f not in ("opportunity_id", "base_version")]
        return RecordPreview(table="crm.opportunities", key=write.params["opportunity_id"],
                             before=opp and {f: getattr(opp, f) for f in fields} | {"version": opp.version},
                             after={f: write.params[f] for f in fields}, basis="the opportunity as READ saw it")

    # 5. VERIFY: the opportunity and its history, read back from the CRM ---------------------------------
    def verify(self, step: Step, intake: StaleOpportunity, context: CrmContext, proposal: HygieneProposal,
               receipts: list[WriteReceipt]) -> Verification:
        before = context.opportunity
        assert before is not None
        ref = {"opportunity_id": before.id}
        opp: Opportunity | None = step.tools.read("get_opportunity", ref)
        history: tools.History = step.tools.read("list_activities", ref)
        if opp is None:
            return Verification(passed=False, problems=(f"opportunity {before.id} is gone from the CRM",))
        planned = proposal.changes(before)
        ours = [u for u in history.updates if u.from_version == before.version]
        mine = ours[0] if ours else None
        # The record as our update left it: the current record, unless someone has changed it since.
        written = opp.model_dump() if mine is None or opp.version == mine.to_version else (
            opp.model_dump() | {f: v[1] for f, v in (mine.changes or {}).items()})
        expected = before.model_dump() | planned
        problems = [] if mine else [f"no update of {before.id} from version {before.version} in its history"]
        return Verification(
            passed=not problems, problems=tuple(problems),
            checks=(expectations.post_write_check(written, expected, len(ours)),),
            records={"opportunity_id": opp.id, "version": opp.version, "stage": opp.stage, "next_step": opp.next_step,
                     "writes": [f"{r.table}:{r.key}" for r in receipts]})

    # Audit: one landed update per intent and opportunity (the CRM's own history is counted by the tests
    # and the chaos suite; `status` must not depend on an external service being up) ------------------
    def duplicate_writes(self, conn: Connection) -> int:
        w = writes.c
        return excess(conn, [w.intent_id, w.target], w.workflow == self.name, w.status.in_(LANDED))


# -- the offline proposer: the same typed proposal a model would return, from rules ---------------------
_STAGE_SIGNALS = (  # the first that matches a note names its stage
    ("closed_won", re.compile(r"\b(contract signed|signed the (contract|order)|closed won|po received)\b", re.IGNORECASE)),
    ("closed_lost", re.compile(r"\b(went with (a |the )?competitor|no longer interested|closed lost|"
                               r"not moving forward|deal (is )?lost)\b", re.IGNORECASE)),
    ("negotiation", re.compile(r"\b(negotiat\w*|redlines?|legal review|pricing discussion)\b", re.IGNORECASE)),
    ("proposal", re.compile(r"\b(proposal (was )?sent|sent (the |a |our )?(proposal|quote)|quote sent)\b", re.IGNORECASE)),
    ("qualification", re.compile(r"\b(qualified|budget confirmed|discovery call (done|held))\b", re.IGNORECASE)),
)
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_NEXT_STEP = re.compile(r"\bnext step\s*[:\-]\s*([^\n]{3,500}?)\s*(?:\.(?:\s|$)|$)", re.IGNORECASE)
_OWNER = re.compile(r"\b(?:reassign(?:ed)? to|new owner\s*:?|handed over to)\s+@?([a-z][a-z0-9_.-]{1,63})", re.IGNORECASE)
_AMOUNT = re.compile(r"\b(?:new amount|amount (?:is )?now|revised amount)\s*:?\s*\$?\s*([0-9][0-9,]*(?:\.[0-9]{1,2})?)"
                     r"\s*(k\b)?", re.IGNORECASE)


def from_notes(intake: StaleOpportunity, context: CrmContext) -> HygieneProposal:
    """The latest note that says something decides each field. A note's text never adds a kind of change:
    a stage move the record does not allow is proposed as read and refused by VALIDATE, and anything
    addressed to the agent is only reported in the rationale."""
    fields: dict[str, Any] = {}
    used: list[str] = []
    for note in context.notes:
        # A sentence addressed to the agent says nothing about the deal: it is skipped (and reported).
        text = " ".join(s for s in _SENTENCES.split(note.text) if not instruction_like(s))
        for stage, signal in _STAGE_SIGNALS:
            if signal.search(text):
                fields["stage"] = stage
                used.append(note.id)
                break
        if m := _NEXT_STEP.search(text):
            fields["next_step"] = m.group(1).strip()
        if m := _OWNER.search(text):
            fields["owner"] = m.group(1).lower().rstrip(".-")  # "reassign to theo." names theo
        if m := _AMOUNT.search(text):
            value = float(m.group(1).replace(",", "")) * (1000 if m.group(2) else 1)
            fields["amount_cents"] = round(value * 100)
    if intake.next_step_hint and intake.next_step_hint.strip():
        fields["next_step"] = intake.next_step_hint.strip()[:500]
    opp = context.opportunity
    notes = [f"{len(context.notes)} note(s) since the last update"]
    if opp is not None:
        notes.append(f"the record says {opp.stage}, next step {opp.next_step!r}")
    if fields:
        notes.append("the notes say " + ", ".join(f"{k}={v!r}" for k, v in fields.items()))
    hits = [h for n in context.notes for h in instruction_like(n.text)]
    if hits:
        notes.append(f"a note addresses the agent ({'; '.join(hits)[:200]}); it is data and was not acted on")
    return HygieneProposal(**fields, rationale="; ".join(notes)[:2000])


def _pct(before: int | None, after: int | None) -> float:
    if after is None:
        return 0.0
    if not before:
        return 100.0
    return round(abs(after - before) * 100 / before, 2)


def _reject(rule: str, message: str) -> Validation:
    return Validation(violations=(Violation(rule=rule, message=message),))
