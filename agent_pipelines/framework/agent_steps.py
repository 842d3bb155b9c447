"""The steps of every agent job, once: read -> propose -> validate -> approve-gate -> commit -> verify ->
hand off, plus the two continuations (after an approval, after a kill switch's release). Each takes one
intent's StepRun and returns where the intent goes next: an Advance (its Carry for the next step) or
None (it parked, stopped, or another run owns it). The per-intent job (jobs.py) and the batch job
(batch.py) are thin shells around these functions, so the guarantees (claim, state, ledger, trace,
policy, approval) are written here and only here.

Validate and verify run in two phases around the Great Expectations checks: the workflow's rules
first, then the decision once the framework has run the checks (one validation per batch)."""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection

from agent_pipelines.framework import approvals, inputs, quality, run_record
from agent_pipelines.framework.claims import ClaimHeld
from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.tools import ToolBlocked
from agent_pipelines.framework.intents import Intent
from agent_pipelines.framework.ledger import PreconditionFailed, WriteReceipt, WriteStatus, landed_writes
from agent_pipelines.framework.llm import LLMUsage, ProposalFailed, Proposer
from agent_pipelines.framework.notifications import Outbox
from agent_pipelines.framework.policy import Decision, Mode, PolicyDecision, writes_land
from agent_pipelines.framework.rowbuffer import Direct, write_rows
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.steps import (
    Carry,
    StepFailed,
    StepRun,
    carry_from_json,
    check_preconditions,
    model_messages,
    parked_continuation,
    release_parked,
)
from agent_pipelines.framework.workflow import NeedInput, Validation, Verification, Workflow, WriteAction

T = TypeVar("T")
STEPS = ["read", "propose", "validate"]  # the steps a resumed intent may start from
# Where a run launched by a trigger may start. Any other non-terminal state belongs to the run that
# left it there: only the recovery sweeper or an operator's re-execution picks it up, so a duplicate
# run (two ticks, a daemon and a tick) never redoes work or asks for a second approval.
TRIGGER_START = frozenset({S.RECEIVED, S.WAITING_FOR_INPUT, S.PARKED})
RECOVERY_START = frozenset({S.RUNNING, S.COMMITTING, S.VERIFYING, S.FAILED, S.NEEDS_ATTENTION, S.QUARANTINED})


class Advance(NamedTuple):
    """The intent goes on to the next step with `carry`; `metadata` describes this step's result."""

    carry: Carry
    metadata: dict[str, Any]


def passed_on(carry: Carry) -> Advance:
    """A recovered intent resumes at commit: the steps before it hand its stored plan on unchanged."""
    return Advance(carry, {"resumed_from": "commit"})


def not_startable(intent: Intent, recovery: bool) -> str | None:
    """Why a run of the main job must not act on this intent now (None: it may)."""
    if intent.is_terminal:
        return f"intent {intent.intent_id} is already {intent.state}: nothing to do"
    if intent.state in TRIGGER_START or (recovery and intent.state in RECOVERY_START):
        return None
    if intent.state == S.WAITING_FOR_APPROVAL:
        return f"intent {intent.intent_id} waits for approval: nothing to do (its continuation commits it)"
    return (f"intent {intent.intent_id} is {intent.state}: nothing to do (a duplicate run; the recovery "
            f"sweeper or an operator's re-execution resumes it)")


def stored_decision(wf: Workflow, run: StepRun, intent: Intent) -> Carry | None:
    """The decided plan of an intent that died at commit or later, when its recovery must resume there:
    some writes landed (they are never decided again against records they changed) or the plan was
    approved (a human decided it). Otherwise the intent starts again from read."""
    if intent.state not in RECOVERY_START:  # (checked first: a fresh intent costs no read)
        return None
    saved = inputs.saved_step(run.db, intent.intent_id, "commit")
    if saved is None:
        return None
    carry = carry_from_json(wf, saved["output"])
    landed = landed_writes(run.db, intent.intent_id)
    if not landed and carry.approval_id is None:
        return None
    if carry.approval_id is not None:  # resuming an approved plan: it must still verify, as at load_approved
        key = run.runtime.approval_key()
        try:
            with run.db.connect() as conn:
                req = approvals.verify_approved(conn, key, wf.policy, carry.approval_id)
        except approvals.ApprovalTampered as exc:
            with run.db.connect() as conn:
                req = approvals.get(conn, carry.approval_id)
            approvals.refuse(run.db, key, req, str(exc))
            raise StepFailed(S.NEEDS_ATTENTION, f"approval refused: {exc}") from exc
        if [a.model_dump(mode="json") for a in carry.plan or ()] != req["approved_payload"]["writes"]:
            raise StepFailed(S.NEEDS_ATTENTION, f"the stored plan is not the change {carry.approval_id} approved")
    run.tracer.note("recover_from_commit", {"planned": len(carry.plan or ()), "landed": landed,
                                            "approval_id": carry.approval_id, "decided_by_run": saved["run_id"]})
    run.log(f"intent {intent.intent_id}: resuming at commit with the plan decided by run "
            f"{saved['run_id']} ({landed} of {len(carry.plan or ())} writes landed)")
    return carry.model_copy(update={"resumed": True})


# 1. READ ----------------------------------------------------------------------------------------------
def read(wf: Workflow, run: StepRun) -> Advance | None:
    """Load the intent and the minimum context through read-only tools."""
    if (why := not_startable(run.intent(), run.is_recovery)) is not None:
        run.log(why)
        return None
    with run.guard("read"):
        run.checkpoint()
        intent = run.intent()  # again, now that this run holds the claim
        if (why := not_startable(intent, run.is_recovery)) is not None:
            run.release()
            run.log(why)
            return None
        if (decided := stored_decision(wf, run, intent)) is not None:
            return passed_on(decided)
        data, reuse = intent.intake, ()
        if intent.state == S.WAITING_FOR_INPUT:
            with run.db.begin() as conn:
                answer = inputs.take_answer(conn, intent.intent_id)
            if answer is None:
                run.log(f"intent {intent.intent_id} still waits for input: nothing to do")
                return None
            # Resume: apply the answer, and reuse the steps the answered field does not affect.
            data = {**data, **answer["answer"]}
            run.store.update_intake(intent.intent_id, data)
            start = wf.resume_from(answer["field"])
            reuse = tuple(STEPS[:STEPS.index(start)])
            run.tracer.note("resume", {"answer": answer["answer"], "answered_by": answer["answered_by"],
                                       "resume_from": start, "reused": list(reuse)})
        if intent.state == S.PARKED:
            release_parked(run.db, intent.intent_id)
        # A new intent's start may commit with the chunk; a resumed one's (an answer taken, a park
        # released above) commits now, with what it resumed from.
        run.move(S.RUNNING, f"recovery run {run.run_id}" if intent.state in RECOVERY_START else None,
                 with_chunk=intent.state == S.RECEIVED)
        run_record.record_start(run.sink, wf, run_id=run.run_id, intent_id=intent.intent_id, mode=run.mode,
                               llm=run.runtime.llm_config(), intake=data)
        intake = wf.intake_model.model_validate(data)
        saved = inputs.saved_step(run.db, intent.intent_id, "read") if "read" in reuse else None
        if saved is not None:
            ctx_model = wf.context_model.model_validate(saved["output"])
            run.log(f"read: reusing the context persisted by run {saved['run_id']}")
        else:
            with run.gateway.snapshot():
                ctx_model = wf.read(run.step(), intake)
            inputs.save_step(run.sink, intent.intent_id, "read", ctx_model.model_dump(mode="json"), run.run_id)
        return Advance(Carry(intent_id=intent.intent_id, intake=intake, context=ctx_model, reuse=reuse), {})
    return None


# 2. PROPOSE -------------------------------------------------------------------------------------------
def propose(wf: Workflow, run: StepRun, carry: Carry, proposer: Proposer) -> Advance | None:
    """The LLM (or the offline proposer) returns a typed proposal; it decides nothing."""
    with run.guard("propose"):
        run.checkpoint()
        if carry.resumed:
            return passed_on(carry)
        saved = inputs.saved_step(run.db, carry.intent_id, "propose") if "propose" in carry.reuse else None
        if saved is not None:
            run.log(f"propose: reusing the proposal persisted by run {saved['run_id']}")
            return Advance(carry.model_copy(update={"proposal": wf.proposal_model.model_validate(saved["output"])}), {})
        try:
            proposal, usage = ask(wf, proposer, carry.intake, carry.context)
        except ProposalFailed as exc:
            run.tracer.llm_call(**exc.usage.model_dump(), output=None, error=str(exc)[:4000])
            run.budget.check_llm()  # re-asks that burned the budget quarantine rather than fail
            raise StepFailed(S.FAILED, f"no valid proposal after {exc.usage.attempts} attempt(s): {exc}") from exc
        run.tracer.llm_call(**usage.model_dump(), output=proposal)
        run.budget.check_llm()
        inputs.save_step(run.sink, carry.intent_id, "propose", proposal.model_dump(mode="json"), run.run_id)
        return Advance(carry.model_copy(update={"proposal": proposal}), {
            "model": usage.model, "prompt_version": usage.prompt_version, "attempts": usage.attempts,
            "tokens": usage.prompt_tokens + usage.completion_tokens, "cost_usd": usage.cost_usd})
    return None


# 3. VALIDATE ------------------------------------------------------------------------------------------
def validate_rules(wf: Workflow, run: StepRun, carry: Carry) -> Validation | Advance | None:
    """Phase 1: the workflow's rules. A Validation still has its checks to run (then validate_decide)."""
    with run.guard("validate"):
        run.checkpoint()
        if carry.resumed:
            return passed_on(carry)
        return wf.validate(run.step(), carry.intake, carry.context, carry.proposal)
    return None


def ask(wf: Workflow, proposer: Proposer, intake: BaseModel, context: BaseModel) -> tuple[BaseModel, LLMUsage]:
    """One typed proposal from the model (or the offline proposer) for this intake and context."""
    return proposer.propose(response_model=wf.proposal_model, messages=lambda: model_messages(wf, intake, context),
                            offline=lambda: wf.propose_offline(intake, context), prompt_version=wf.prompt_version)


class Ruling(BaseModel, frozen=True):
    """What VALIDATE decides from a Validation with its suites run, before anything is recorded: ask a
    question, reject with the problems, or a policy decision over the planned writes. A replay
    (framework/replay.py) takes the same ruling in its sandbox."""

    need_input: NeedInput | None = None
    problems: tuple[str, ...] = ()
    plan: tuple[WriteAction, ...] = ()
    facts: dict[str, Any] = {}
    decision: PolicyDecision | None = None


def rule_on(wf: Workflow, gateway: ToolGateway, carry: Carry, v: Validation, mode: Mode) -> Ruling:
    if v.need_input is not None:
        return Ruling(need_input=v.need_input)
    problems = [f"{x.rule}: {x.message}" for x in v.violations]
    problems += [f"{s.suite} failed: {list(s.failed)}" for s in v.suites if not s.passed]
    if problems:
        return Ruling(problems=tuple(problems))
    plan = wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)
    planned = [(a.tool, gateway.is_high_impact(a.tool)) for a in plan]
    # Where each destination of the planned writes came from (the pack's provenance rules): a
    # value only untrusted text supplied is denied or sent for approval here, before commit.
    facts = {**v.facts, **gateway.provenance_facts([(a.tool, a.params) for a in plan])}
    return Ruling(plan=tuple(plan), facts=facts, decision=wf.policy.decide(facts, planned=planned, mode=mode))


def gate(decision: PolicyDecision, mode: Mode) -> S | None:
    """Where APPROVE sends a decided intent: denied, waiting_for_approval, or None (on to commit).
    read_only/shadow change nothing, so no human is asked for them."""
    if decision.decision == Decision.DENY:
        return S.DENIED
    if decision.decision == Decision.NEEDS_APPROVAL and writes_land(mode):
        return S.WAITING_FOR_APPROVAL
    return None


def validate_decide(wf: Workflow, run: StepRun, carry: Carry, v: Validation) -> Advance | None:
    """Phase 2, with `v.suites` run: ask for input, reject, or take the policy decision."""
    with run.guard("validate"):
        run.check_events(v.suites)
        ruling = rule_on(wf, run.gateway, carry, v, run.mode)
        if ruling.need_input is not None:
            ask_for = ruling.need_input
            req = inputs.ask(run.db, intent_id=carry.intent_id, field=ask_for.field,
                             question=ask_for.question, ttl_hours=wf.policy.input_ttl_hours, run_id=run.run_id)
            run.park(S.WAITING_FOR_INPUT, f"{ask_for.field}: {ask_for.question} (question {req['request_id']})")
            return None
        if ruling.problems:
            run.park(S.REJECTED_INPUT, "; ".join(ruling.problems)[:2000])
            return None
        decision = ruling.decision
        assert decision is not None
        run.tracer.policy("proposal", decision)
        run_record.record_decision(run.sink, run_id=run.run_id, intent_id=carry.intent_id, decision=decision,
                                  writes=run_record.planned_writes(wf, carry.context, ruling.plan, run.tracer.redact))
        return Advance(carry.model_copy(update={"decision": decision, "facts": ruling.facts}),
                       {"decision": str(decision.decision), "rule": decision.rule})
    return None


# 4. APPROVE -------------------------------------------------------------------------------------------
def approve_gate(wf: Workflow, run: StepRun, carry: Carry) -> Advance | None:
    """allow goes on; needs_approval stores the exact change for a human; deny stops."""
    decision = carry.decision
    assert decision is not None
    with run.guard("approve_gate"):
        run.checkpoint()
        if carry.resumed:
            return passed_on(carry)
        stop = gate(decision, run.mode)
        if stop == S.DENIED:
            run.park(S.DENIED, "; ".join(decision.reasons))
            return None
        if decision.decision == Decision.NEEDS_APPROVAL and stop is None:
            # read_only/shadow change nothing, so no human is asked; the trace says one would be.
            run.tracer.note("approval_not_requested", {"mode": str(run.mode), "reasons": list(decision.reasons)})
        elif stop == S.WAITING_FOR_APPROVAL:
            plan = wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)
            runtime = run.runtime
            req = approvals.request_approval(
                run.db, runtime.approval_key(), intent_id=carry.intent_id, workflow=wf.name,
                policy_digest=wf.policy.digest, run_id=run.run_id, ttl_hours=wf.policy.approval.ttl_hours,
                required_approvals=wf.policy.approval.required_approvals(carry.facts),
                payload={"writes": [a.model_dump(mode="json") for a in plan],
                         "proposal": carry.proposal.model_dump(mode="json")},
                evidence={"intake": carry.intake.model_dump(mode="json"),
                          "context": carry.context.model_dump(mode="json"),
                          "policy": decision.model_dump(mode="json"), "facts": carry.facts,
                          "source": run.intent().source_ref},
                rationale=wf.rationale(carry.intake, carry.context, carry.proposal),
                notify=Outbox(policy=wf.policy.notifications, settings=runtime.notify,
                              redact_fields=wf.policy.data_handling.redact_fields))
            run.park(S.WAITING_FOR_APPROVAL, f"approval {req['approval_id']} requested: " + "; ".join(decision.reasons))
            run.requested(req)
            return None
        return Advance(carry, {"decision": str(decision.decision)})
    return None


# 5. COMMIT --------------------------------------------------------------------------------------------
def commit(wf: Workflow, run: StepRun, carry: Carry) -> Advance | None:
    """Each planned write once, through the gateway and the ledger (within mode and kill switch)."""
    with run.guard("commit"):
        run.checkpoint()
        run.move(S.COMMITTING)
        check_preconditions(wf, run, carry)
        plan = carry.plan or wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)
        # The decided plan is stored before the first write lands, never buffered: a recovery resumes
        # here with exactly it. Writes that go together (all local, no approval) store it in their own
        # transaction: if they do not land, neither does it, and a recovery starts again from read.
        decided = carry.model_copy(update={"plan": tuple(plan), "receipts": (), "resumed": False, "reuse": ()})
        step_row = inputs.step_row(carry.intent_id, "commit", decided.model_dump(mode="json"), run.run_id)
        together = run.writes_land and carry.approval_id is None and run.gateway.can_group([a.tool for a in plan])
        if not together:
            Direct(run.db).put(*step_row)
        if not run.writes_land:
            receipts = run.gateway.dry_run([(a.tool, a.params, a.action) for a in plan])
            for r in receipts:
                run.log(f"{run.mode}: {r.action} would write {r.table}:{r.key}; nothing changed in the system of record")
            return Advance(carry.model_copy(update={"receipts": tuple(receipts)}),
                           {"writes": 0, "would_write": len(receipts)})
        receipts = (write_together(run, plan, lambda conn: write_rows(conn, [step_row])) if together
                    else [write_claimed(run, action, carry.approval_id) for action in plan])
        if carry.approval_id is not None:  # the approval's chain records what its continuation wrote
            approvals.record_committed(run.db, run.runtime.approval_key(), carry.approval_id,
                                       [f"{r.table}:{r.key}" for r in receipts])
        return Advance(carry.model_copy(update={"receipts": tuple(receipts)}), {
            "writes": len(receipts), "already_committed": sum(r.status == "already_committed" for r in receipts)})
    return None


def write_claimed(run: StepRun, action: WriteAction, approval_id: str | None) -> WriteReceipt:
    """One planned write, under this run's claim taken or renewed first: a run that lost its claim
    writes nothing more. The claim is taken in the write's own transaction (the gateway's fence:
    StepRun.fence); an external write's call runs outside it, so its claim is taken before."""
    with _refused_needs_attention(action.action):
        if run.gateway.is_external(action.tool):
            run.claim()
            receipt = run.gateway.write(action.tool, action.params, action=action.action, approval_id=approval_id)
        else:
            receipt = _reclaiming(run, lambda: run.gateway.write(action.tool, action.params, action=action.action,
                                                                 approval_id=approval_id))
    run.wrote(receipt)
    return receipt


def write_together(run: StepRun, plan: Sequence[WriteAction], before: Callable[[Connection], None]) -> list[WriteReceipt]:
    """An intent's writes to our own database in one transaction (ToolGateway.write_all), with the
    decided plan (`before`) and under this run's claim (the fence): all land, or none does."""
    with _refused_needs_attention("+".join(a.action for a in plan) + " (together, nothing written)"):
        receipts = _reclaiming(run, lambda: run.gateway.write_all([(a.tool, a.params, a.action) for a in plan],
                                                                  before=before))
    for receipt in receipts:
        run.wrote(receipt)
    return receipts


@contextmanager
def _refused_needs_attention(what: str) -> Iterator[None]:
    """A write refused by a record that changed or by policy: the intent needs attention, saying why."""
    try:
        yield
    except PreconditionFailed as exc:
        raise StepFailed(S.NEEDS_ATTENTION, f"{what}: precondition failed: {exc}") from exc
    except ToolBlocked as exc:
        raise StepFailed(S.NEEDS_ATTENTION, f"{what}: blocked by policy: {exc}") from exc


def _reclaiming(run: StepRun, write: Callable[[], T]) -> T:
    """`write` with the claim taken in its transaction (the fence); refused because a run that is over
    still holds it, once more after taking it back (else ClaimHeld again: this run stops here)."""
    try:
        return write()
    except ClaimHeld:
        run.claim()
        return write()


# 6. VERIFY --------------------------------------------------------------------------------------------
def verify_read_back(wf: Workflow, run: StepRun, carry: Carry) -> Verification | Advance | None:
    """Phase 1: read back independently. A Verification still has its checks to run (then verify_decide)."""
    with run.guard("verify"):
        run.checkpoint()
        run.move(S.VERIFYING, with_chunk=True)
        if not run.writes_land:
            # Nothing landed, so there is nothing to read back: check what was recorded instead.
            missing = [r.action for r in carry.receipts if r.status not in (WriteStatus.WOULD_WRITE, WriteStatus.SHADOW)]
            if missing:
                raise StepFailed(S.NEEDS_ATTENTION, f"{run.mode} run reports real writes: {missing}")
            return Advance(carry, {"records": run.md([f"{r.table}:{r.key}" for r in carry.receipts])})
        with run.gateway.snapshot():
            return wf.verify(run.step(), carry.intake, carry.context, carry.proposal, list(carry.receipts))
    return None


def verify_decide(run: StepRun, carry: Carry, result: Verification) -> Advance | None:
    """Phase 2, with `result.suites` run: a mismatch or a failed post-write check needs attention."""
    with run.guard("verify"):
        run.check_events(result.suites)
        problems = list(result.problems) + [f"{s.suite} failed: {list(s.failed)}" for s in result.suites
                                            if not s.passed]
        if not result.passed or problems:
            raise StepFailed(S.NEEDS_ATTENTION, "verification failed: " + "; ".join(problems))
        return Advance(carry, {"records": run.md(result.records)})
    return None


# 7. HAND OFF ------------------------------------------------------------------------------------------
def hand_off(run: StepRun, carry: Carry) -> Advance | None:
    """Complete the intent with a summary and pointers to the records and the trace."""
    with run.guard("hand_off"):
        run.checkpoint()
        records = [f"{r.table}:{r.key}" for r in carry.receipts]
        summary = ("committed and verified: " if run.writes_land
                   else f"{run.mode} mode, nothing written; would write: ") + (", ".join(records) or "nothing")
        run.move(S.COMPLETED, summary, with_chunk=True)
        return Advance(carry, {"records": run.md(records), "run_id": run.run_id})
    return None


# Continuations ----------------------------------------------------------------------------------------
def load_approved(wf: Workflow, run: StepRun, approval_id: str) -> Advance | None:
    """The decided change, loaded only if it is exactly what was approved (signatures re-verified)."""
    state = run.intent().state
    if state == S.PARKED and parked_continuation(run.db, run.intent_id) == approval_id:
        release_parked(run.db, run.intent_id)
    elif state != S.WAITING_FOR_APPROVAL:
        run.log(f"intent {run.intent_id} is {state}: nothing to continue")
        return None
    with run.guard("load_approved"):
        run.checkpoint()
        key = run.runtime.approval_key()
        try:
            with run.db.connect() as conn:
                req = approvals.verify_approved(conn, key, wf.policy, approval_id)
        except approvals.ApprovalTampered as exc:
            with run.db.connect() as conn:  # read, then refuse on a connection of its own
                req = approvals.get(conn, approval_id)
            approvals.refuse(run.db, key, req, str(exc))
            raise StepFailed(S.NEEDS_ATTENTION, f"approval refused: {exc}") from exc
        taken = req["decisions"]
        for d in taken:
            run.tracer.note("approval_decision", {k: d[k] for k in ("decision_id", "decided_by", "decision",
                                                                     "note", "at", "digest_seen", "edited_digest")})
        payload, evidence = req["approved_payload"], req["evidence"]
        carry = Carry(intent_id=req["intent_id"],
                      intake=wf.intake_model.model_validate(evidence["intake"]),
                      context=wf.context_model.model_validate(evidence["context"]),
                      proposal=wf.proposal_model.model_validate(payload["proposal"]),
                      facts=evidence.get("facts", {}), approval_id=approval_id,
                      plan=tuple(WriteAction.model_validate(w) for w in payload["writes"]))
        if state == S.PARKED:
            run.move(S.WAITING_FOR_APPROVAL, f"released from the kill switch; continuing {approval_id}")
        return Advance(carry, {"approved_by": ", ".join(d["decided_by"] for d in taken), "approval_id": approval_id})
    return None


def load_parked(wf: Workflow, run: StepRun, park: dict[str, Any]) -> Advance | None:
    """An intent a kill switch parked at commit or later, from the change it had decided (commit again
    is safe: the ledger returns the writes that already landed)."""
    if run.intent().state != S.PARKED or park["released_at"] is not None:
        run.log(f"intent {park['intent_id']} is {run.intent().state}: nothing to resume")
        return None
    with run.guard("load_parked"):
        run.checkpoint()
        release_parked(run.db, park["intent_id"])
        carry = carry_from_json(wf, park["carry"])
        run.tracer.note("released", {"park_id": park["id"], "scope": park["scope"], "step": park["step"]})
        return Advance(carry, {"resumed_from": park["step"]})
    return None




def with_suites(result: Validation | Verification) -> Any:
    """One intent's checks run (a one-intent run; a batch runs all its intents' checks at once)."""
    return result.model_copy(update={"suites": result.suites + quality.run_checks(result.checks)})
