"""Turns a Workflow into a Dagster job: read -> propose -> validate -> approve-gate -> commit -> verify
-> hand off. Each op wraps the workflow's step with the framework's guarantees, so a workflow never
writes its own state handling, ledger, policy or tracing. An op that parks the intent (waiting,
denied, rejected) emits no output and Dagster shows the later steps as skipped."""

from collections.abc import Iterator
from typing import Any, NamedTuple

import dagster as dg
from agent_pipelines.framework import approvals, controls, inputs, quality
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.gateway import ToolBlocked
from agent_pipelines.framework.intents import Intent
from agent_pipelines.framework.ledger import PreconditionFailed, WriteReceipt, WriteStatus, landed_writes
from agent_pipelines.framework.llm import ProposalFailed
from agent_pipelines.framework.notifications import Outbox
from agent_pipelines.framework.policy import Decision, Mode
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.steps import (
    TAG,
    Carry,
    StepFailed,
    StepRun,
    carry_from_json,
    check_preconditions,
    model_messages,
    parked_continuation,
    release_parked,
)
from agent_pipelines.framework.workflow import Workflow, WriteAction

STEPS = ["read", "propose", "validate"]  # the steps a resumed intent may start from
# Where a run launched by a trigger may start. Any other non-terminal state belongs to the run that
# left it there: only the recovery sweeper or an operator's re-execution picks it up, so a duplicate
# run (two ticks, a daemon and a tick) never redoes work or asks for a second approval.
TRIGGER_START = frozenset({S.RECEIVED, S.WAITING_FOR_INPUT, S.PARKED})
RECOVERY_START = frozenset({S.RUNNING, S.COMMITTING, S.VERIFYING, S.FAILED, S.NEEDS_ATTENTION, S.QUARANTINED})


class IntentConfig(dg.Config):
    intent_id: str


class ApprovalConfig(dg.Config):
    approval_id: str


class ParkConfig(dg.Config):
    park_id: int


def run_tags(wf: Workflow, intent_id: str, model: str, mode: Mode | None = None) -> dict[str, str]:
    """What a run is pinned to: workflow and policy versions, the rollout mode, the model, and its
    deadline (`dagster/max_runtime`, enforced by run monitoring; the steps also check it)."""
    return {
        f"{TAG}/workflow": wf.name,
        f"{TAG}/workflow_version": wf.version,
        f"{TAG}/intent_id": intent_id,
        f"{TAG}/mode": str(mode or wf.policy.rollout.mode),
        f"{TAG}/policy_digest": wf.policy.digest[:16],
        f"{TAG}/model": model,
        "dagster/max_runtime": str(int(wf.policy.budgets.max_wall_s)),
    }


def launch_tags(db: Database, wf: Workflow, intent_id: str, model: str) -> dict[str, str]:
    """Tags for a run a sensor launches now: the mode is the operator's current setting."""
    return run_tags(wf, intent_id, model, controls.current_mode(db, wf.name, wf.policy.rollout.mode))


def run_config(wf: Workflow, intent_id: str) -> dict[str, Any]:
    return {"ops": {f"{wf.name}__read": {"config": {"intent_id": intent_id}}}}


def approved_run_config(wf_name: str, approval_id: str) -> dict[str, Any]:
    return {"ops": {f"{wf_name}__load_approved": {"config": {"approval_id": approval_id}}}}


class AgentJobs(NamedTuple):
    main: dg.JobDefinition
    after_approval: dg.JobDefinition
    resume: dg.JobDefinition


class WorkflowJobs(NamedTuple):
    """A workflow with its jobs, as the multi-workflow sensors (approvals, inputs, release) take them."""

    wf: Workflow
    jobs: AgentJobs


def continuation_request(db: Database, w: WorkflowJobs, intent_id: str, approval_id: str, *, run_key: str,
                         model: str, extra_tags: dict[str, str] | None = None) -> dg.RunRequest:
    """The run that commits an approved change (after a decision, a kill switch's release, or a
    recovery of a continuation that died)."""
    return dg.RunRequest(run_key=run_key, job_name=w.jobs.after_approval.name,
                         run_config=approved_run_config(w.wf.name, approval_id),
                         tags={**launch_tags(db, w.wf, intent_id, model), f"{TAG}/approval_id": approval_id,
                               **(extra_tags or {})})


def announce_request(context: dg.OpExecutionContext, req: dict[str, Any], console_url: str) -> None:
    """The request's console link where an operator looks: the run's tags and an observation of the
    approvals/pending_queue asset (the step parks, so there is no output to carry metadata)."""
    link = approvals.console_link(console_url, req["approval_id"])
    context.instance.add_run_tags(context.run_id, {f"{TAG}/approval_id": req["approval_id"],
                                                   f"{TAG}/console_url": link})
    context.log_event(dg.AssetObservation(asset_key=dg.AssetKey(["approvals", "pending_queue"]), metadata={
        "approval_id": req["approval_id"], "intent_id": req["intent_id"], "console_url": dg.MetadataValue.url(link)}))


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
    saved = inputs.saved_step(run.db, intent.intent_id, "commit")
    if saved is None or intent.state not in RECOVERY_START:
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
                approvals.refuse(run.db, key, approvals.get(conn, carry.approval_id), str(exc))
            raise StepFailed(S.NEEDS_ATTENTION, f"approval refused: {exc}") from exc
        if [a.model_dump(mode="json") for a in carry.plan or ()] != req["approved_payload"]["writes"]:
            raise StepFailed(S.NEEDS_ATTENTION, f"the stored plan is not the change {carry.approval_id} approved")
    run.tracer.note("recover_from_commit", {"planned": len(carry.plan or ()), "landed": landed,
                                            "approval_id": carry.approval_id, "decided_by_run": saved["run_id"]})
    run.ctx.log.info(f"intent {intent.intent_id}: resuming at commit with the plan decided by run "
                     f"{saved['run_id']} ({landed} of {len(carry.plan or ())} writes landed)")
    return carry.model_copy(update={"resumed": True})


def build_job(wf: Workflow, *, tags: dict[str, str] | None = None) -> dg.JobDefinition:
    return build_jobs(wf, tags=tags).main


def build_jobs(wf: Workflow, *, tags: dict[str, str] | None = None) -> AgentJobs:
    name = wf.name
    if wf.proposal_model.model_config.get("extra") != "forbid":
        # The proposal is the model's only output: a field it invents (a tool, a recipient, "approved")
        # must fail validation, not be silently dropped or carried along.
        raise TypeError(f"{wf.proposal_model.__name__} must set model_config extra='forbid'")
    opt = dg.Out(Carry, is_required=False)

    @dg.op(name=f"{name}__read", out=opt)
    def read(context: dg.OpExecutionContext, config: IntentConfig, runtime: AgentRuntime) -> Iterator[dg.Output]:
        """READ: load the intent and the minimum context through read-only tools."""
        run = StepRun(wf, context, runtime, config.intent_id)
        quality.warm_up()  # the validate step's suites need it; importing takes seconds in a new worker
        if (why := not_startable(run.intent(), run.is_recovery)) is not None:
            context.log.info(why)
            return
        with run.guard("read"):
            run.checkpoint()
            intent = run.intent()  # again, now that this run holds the claim
            if (why := not_startable(intent, run.is_recovery)) is not None:
                run.release()
                context.log.info(why)
                return
            if (decided := stored_decision(wf, run, intent)) is not None:
                yield run.output(decided, resumed_from="commit")
                return
            data, reuse = intent.intake, ()
            if intent.state == S.WAITING_FOR_INPUT:
                with run.db.begin() as conn:
                    answer = inputs.take_answer(conn, intent.intent_id)
                if answer is None:
                    context.log.info(f"intent {intent.intent_id} still waits for input: nothing to do")
                    return
                # Resume: apply the answer, and reuse the steps the answered field does not affect.
                data = {**data, **answer["answer"]}
                run.store.update_intake(intent.intent_id, data)
                start = wf.resume_from(answer["field"])
                reuse = tuple(STEPS[:STEPS.index(start)])
                run.tracer.note("resume", {"answer": answer["answer"], "answered_by": answer["answered_by"],
                                           "resume_from": start, "reused": list(reuse)})
            if intent.state == S.PARKED:
                release_parked(run.db, intent.intent_id)
            run.move(S.RUNNING, f"recovery run {run.run_id}" if intent.state in RECOVERY_START else None)
            intake = wf.intake_model.model_validate(data)
            saved = inputs.saved_step(run.db, intent.intent_id, "read") if "read" in reuse else None
            if saved is not None:
                ctx_model = wf.context_model.model_validate(saved["output"])
                context.log.info(f"read: reusing the context persisted by run {saved['run_id']}")
            else:
                ctx_model = wf.read(run.step(), intake)
                inputs.save_step(run.db, intent.intent_id, "read", ctx_model.model_dump(mode="json"), run.run_id)
            yield run.output(Carry(intent_id=intent.intent_id, intake=intake, context=ctx_model, reuse=reuse))

    @dg.op(name=f"{name}__propose", out=opt)
    def propose(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """PROPOSE: the LLM (or the offline proposer) returns a typed proposal; it decides nothing."""
        run = StepRun(wf, context, runtime, carry.intent_id)
        proposer = runtime.proposer()
        with run.guard("propose"):
            run.checkpoint()
            if carry.resumed:
                yield run.output(carry, resumed_from="commit")
                return
            saved = inputs.saved_step(run.db, carry.intent_id, "propose") if "propose" in carry.reuse else None
            if saved is not None:
                context.log.info(f"propose: reusing the proposal persisted by run {saved['run_id']}")
                yield run.output(carry.model_copy(update={"proposal": wf.proposal_model.model_validate(saved["output"])}))
                return
            try:
                proposal, usage = proposer.propose(
                    response_model=wf.proposal_model,
                    messages=lambda: model_messages(wf, carry.intake, carry.context),
                    offline=lambda: wf.propose_offline(carry.intake, carry.context),
                    prompt_version=wf.prompt_version)
            except ProposalFailed as exc:
                run.tracer.llm_call(**exc.usage.model_dump(), output=None, error=str(exc)[:4000])
                run.budget.check_llm()  # re-asks that burned the budget quarantine rather than fail
                raise StepFailed(S.FAILED, f"no valid proposal after {exc.usage.attempts} attempt(s): {exc}") from exc
            run.tracer.llm_call(**usage.model_dump(), output=proposal)
            run.budget.check_llm()
            inputs.save_step(run.db, carry.intent_id, "propose", proposal.model_dump(mode="json"), run.run_id)
            yield run.output(carry.model_copy(update={"proposal": proposal}),
                             model=usage.model, prompt_version=usage.prompt_version, attempts=usage.attempts,
                             tokens=usage.prompt_tokens + usage.completion_tokens, cost_usd=usage.cost_usd)

    @dg.op(name=f"{name}__validate", out=opt)
    def validate(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """VALIDATE: workflow rules, pre-write suite, dedupe, then the policy decision."""
        run = StepRun(wf, context, runtime, carry.intent_id)
        with run.guard("validate"):
            run.checkpoint()
            if carry.resumed:
                yield run.output(carry, resumed_from="commit")
                return
            v = wf.validate(run.step(), carry.intake, carry.context, carry.proposal)
            run.check_events(v.suites)
            if v.need_input is not None:
                req = inputs.ask(run.db, intent_id=carry.intent_id, field=v.need_input.field,
                                 question=v.need_input.question, ttl_hours=wf.policy.input_ttl_hours,
                                 run_id=run.run_id)
                run.park(S.WAITING_FOR_INPUT, f"{v.need_input.field}: {v.need_input.question} "
                                              f"(question {req['request_id']})")
                return
            problems = [f"{x.rule}: {x.message}" for x in v.violations]
            problems += [f"{s.suite} failed: {list(s.failed)}" for s in v.suites if not s.passed]
            if problems:
                run.park(S.REJECTED_INPUT, "; ".join(problems)[:2000])
                return
            plan = wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)
            planned = [(a.tool, run.gateway.is_high_impact(a.tool)) for a in plan]
            # Where each destination of the planned writes came from (the pack's provenance rules): a
            # value only untrusted text supplied is denied or sent for approval here, before commit.
            facts = {**v.facts, **run.gateway.provenance_facts([(a.tool, a.params) for a in plan])}
            decision = wf.policy.decide(facts, planned=planned, mode=run.mode)
            run.tracer.policy("proposal", decision)
            yield run.output(carry.model_copy(update={"decision": decision, "facts": facts}),
                             decision=str(decision.decision), rule=decision.rule)

    @dg.op(name=f"{name}__approve_gate", out=opt)
    def approve_gate(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """APPROVE: allow goes on; needs_approval stores the exact change for a human; deny stops."""
        run = StepRun(wf, context, runtime, carry.intent_id)
        decision = carry.decision
        assert decision is not None
        with run.guard("approve_gate"):
            run.checkpoint()
            if carry.resumed:
                yield run.output(carry, resumed_from="commit")
                return
            if decision.decision == Decision.DENY:
                run.park(S.DENIED, "; ".join(decision.reasons))
                return
            if decision.decision == Decision.NEEDS_APPROVAL and not run.writes_land:
                # read_only/shadow change nothing, so no human is asked; the trace says one would be.
                run.tracer.note("approval_not_requested", {"mode": str(run.mode), "reasons": list(decision.reasons)})
            elif decision.decision == Decision.NEEDS_APPROVAL:
                plan = wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)
                req = approvals.request_approval(
                    run.db, runtime.approval_key(), intent_id=carry.intent_id, workflow=wf.name,
                    policy_digest=wf.policy.digest, run_id=run.run_id,
                    ttl_hours=wf.policy.approval.ttl_hours,
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
                run.park(S.WAITING_FOR_APPROVAL,
                         f"approval {req['approval_id']} requested: " + "; ".join(decision.reasons))
                announce_request(context, req, runtime.console_url)
                return
            yield run.output(carry, decision=str(decision.decision))

    @dg.op(name=f"{name}__commit", out=opt)
    def commit(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """COMMIT: each planned write once, through the gateway and the ledger (within mode and kill switch)."""
        run = StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
                       carry=carry.model_copy(update={"receipts": ()}))
        with run.guard("commit"):
            run.checkpoint()
            run.move(S.COMMITTING)
            check_preconditions(wf, run, carry)
            receipts: list[WriteReceipt] = []
            plan = carry.plan or wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)
            # The decided plan is stored before the first write: a recovery resumes here with exactly it.
            decided = carry.model_copy(update={"plan": tuple(plan), "receipts": (), "resumed": False, "reuse": ()})
            inputs.save_step(run.db, carry.intent_id, "commit", decided.model_dump(mode="json"), run.run_id)
            if not run.writes_land:
                receipts = run.gateway.dry_run([(a.tool, a.params, a.action) for a in plan])
                for r in receipts:
                    context.log.info(f"{run.mode}: {r.action} would write {r.table}:{r.key}; "
                                     f"nothing changed in the system of record")
                yield run.output(carry.model_copy(update={"receipts": tuple(receipts)}), writes=0,
                                 would_write=len(receipts))
                return
            for action in plan:
                run.claim()  # a heartbeat before each write: a run that lost its claim writes nothing more
                try:
                    receipt = run.gateway.write(action.tool, action.params, action=action.action,
                                                approval_id=carry.approval_id)
                except PreconditionFailed as exc:
                    raise StepFailed(S.NEEDS_ATTENTION, f"{action.action}: precondition failed: {exc}") from exc
                except ToolBlocked as exc:
                    raise StepFailed(S.NEEDS_ATTENTION, f"{action.action}: blocked by policy: {exc}") from exc
                receipts.append(receipt)
                context.log_event(dg.AssetMaterialization(
                    asset_key=dg.AssetKey(["sor", receipt.table]),
                    description=f"{receipt.action} for intent {carry.intent_id}",
                    metadata={"intent_id": carry.intent_id, "record": receipt.key, "status": str(receipt.status),
                              "idempotency_key": receipt.idempotency_key,
                              "before": run.md(receipt.before or {}), "after": run.md(receipt.after or {})}))
            if carry.approval_id is not None:  # the approval's chain records what its continuation wrote
                approvals.record_committed(run.db, runtime.approval_key(), carry.approval_id,
                                           [f"{r.table}:{r.key}" for r in receipts])
            yield run.output(carry.model_copy(update={"receipts": tuple(receipts)}),
                             writes=len(receipts),
                             already_committed=sum(r.status == "already_committed" for r in receipts))

    @dg.op(name=f"{name}__verify", out=opt)
    def verify(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """VERIFY: read back independently and run the post-write suite; mismatch needs attention."""
        run = StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
                       carry=carry.model_copy(update={"receipts": ()}))
        with run.guard("verify"):
            run.checkpoint()
            run.move(S.VERIFYING)
            if not run.writes_land:
                # Nothing landed, so there is nothing to read back: check what was recorded instead.
                missing = [r.action for r in carry.receipts if r.status not in (WriteStatus.WOULD_WRITE, WriteStatus.SHADOW)]
                if missing:
                    raise StepFailed(S.NEEDS_ATTENTION, f"{run.mode} run reports real writes: {missing}")
                yield run.output(carry, records=run.md([f"{r.table}:{r.key}" for r in carry.receipts]))
                return
            result = wf.verify(run.step(), carry.intake, carry.context, carry.proposal, list(carry.receipts))
            run.check_events(result.suites)
            if not result.passed:
                raise StepFailed(S.NEEDS_ATTENTION, "verification failed: " + "; ".join(result.problems))
            yield run.output(carry, records=run.md(result.records))

    @dg.op(name=f"{name}__hand_off", out=opt)
    def hand_off(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """HAND OFF: complete the intent with a summary and pointers to the records and the trace."""
        run = StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
                       carry=carry.model_copy(update={"receipts": ()}))
        with run.guard("hand_off"):
            run.checkpoint()
            records = [f"{r.table}:{r.key}" for r in carry.receipts]
            summary = ("committed and verified: " if run.writes_land
                       else f"{run.mode} mode, nothing written; would write: ") + (", ".join(records) or "nothing")
            run.move(S.COMPLETED, summary)
            yield run.output(carry, records=run.md(records), run_id=run.run_id)

    @dg.op(name=f"{name}__load_approved", out=opt)
    def load_approved(context: dg.OpExecutionContext, config: ApprovalConfig,
                      runtime: AgentRuntime) -> Iterator[dg.Output]:
        """APPROVED: load the decided change; go on only if it is exactly what was approved."""
        with runtime.db.connect() as conn:
            req = approvals.get(conn, config.approval_id)
        run = StepRun(wf, context, runtime, req["intent_id"], approval_id=config.approval_id)
        state = run.intent().state
        if state == S.PARKED and parked_continuation(run.db, req["intent_id"]) == config.approval_id:
            release_parked(run.db, req["intent_id"])
        elif state != S.WAITING_FOR_APPROVAL:
            context.log.info(f"intent {req['intent_id']} is {state}: nothing to continue")
            return
        with run.guard("load_approved"):
            run.checkpoint()
            key = runtime.approval_key()
            try:
                with run.db.connect() as conn:
                    req = approvals.verify_approved(conn, key, wf.policy, config.approval_id)
            except approvals.ApprovalTampered as exc:
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
                          facts=evidence.get("facts", {}), approval_id=config.approval_id,
                          plan=tuple(WriteAction.model_validate(w) for w in payload["writes"]))
            if state == S.PARKED:
                run.move(S.WAITING_FOR_APPROVAL, f"released from the kill switch; continuing {config.approval_id}")
            yield run.output(carry, approved_by=", ".join(d["decided_by"] for d in taken),
                             approval_id=config.approval_id)

    @dg.op(name=f"{name}__load_parked", out=opt)
    def load_parked(context: dg.OpExecutionContext, config: ParkConfig, runtime: AgentRuntime) -> Iterator[dg.Output]:
        """RELEASED: continue an intent a kill switch parked at commit or later, from the change it had
        decided (commit again is safe: the ledger returns the writes that already landed)."""
        with runtime.db.connect() as conn:
            park = controls.get_park(conn, config.park_id)
        run = StepRun(wf, context, runtime, park["intent_id"], approval_id=park["approval_id"])
        if run.intent().state != S.PARKED or park["released_at"] is not None:
            context.log.info(f"intent {park['intent_id']} is {run.intent().state}: nothing to resume")
            return
        with run.guard("load_parked"):
            run.checkpoint()
            release_parked(run.db, park["intent_id"])
            carry = carry_from_json(wf, park["carry"])
            run.tracer.note("released", {"park_id": config.park_id, "scope": park["scope"], "step": park["step"]})
            yield run.output(carry, resumed_from=park["step"])

    job_tags = {f"{TAG}/workflow": wf.name, f"{TAG}/workflow_version": wf.version,
                f"{TAG}/policy_digest": wf.policy.digest[:16], **(tags or {})}

    @dg.job(name=name, description=wf.description, executor_def=dg.in_process_executor, tags=job_tags)
    def agent_job() -> None:
        carry = read()
        carry = propose(carry)
        carry = validate(carry)
        carry = approve_gate(carry)
        carry = commit(carry)
        carry = verify(carry)
        hand_off(carry)

    @dg.job(name=f"{name}__after_approval", executor_def=dg.in_process_executor, tags=job_tags,
            description=f"Continue {name} after a human approved the stored change: commit, verify, hand off.")
    def after_approval_job() -> None:
        carry = load_approved()
        carry = commit(carry)
        carry = verify(carry)
        hand_off(carry)

    @dg.job(name=f"{name}__resume", executor_def=dg.in_process_executor, tags=job_tags,
            description=f"Continue {name} after a kill switch that parked it at commit or later was released.")
    def resume_job() -> None:
        carry = load_parked()
        carry = commit(carry)
        carry = verify(carry)
        hand_off(carry)

    return AgentJobs(main=agent_job, after_approval=after_approval_job, resume=resume_job)
