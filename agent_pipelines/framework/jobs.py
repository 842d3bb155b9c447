"""Turns a Workflow into a Dagster job: read -> propose -> validate -> approve-gate -> commit -> verify
-> hand off. Each op wraps the workflow's step with the framework's guarantees, so a workflow never
writes its own state handling, ledger, policy or tracing. An op that parks the intent (waiting,
denied, rejected) emits no output and Dagster shows the later steps as skipped."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import dagster as dg
from pydantic import BaseModel, ConfigDict, SerializeAsAny
from sqlalchemy import select, update

from agent_pipelines.framework import approvals, controls, inputs
from agent_pipelines.framework.budgets import BudgetExceeded, RunBudget
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.gateway import KillSwitchEngaged, ToolBlocked, ToolGateway
from agent_pipelines.framework.intents import Intent, IntentStore
from agent_pipelines.framework.ledger import PreconditionFailed, WriteReceipt, WriteStatus, has_writes
from agent_pipelines.framework.llm import ProposalFailed
from agent_pipelines.framework.policy import Decision, Mode, PolicyDecision
from agent_pipelines.framework.redaction import redact_text
from agent_pipelines.framework.tables import parked_intents
from agent_pipelines.framework.quality import SuiteResult
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.trace import Tracer
from agent_pipelines.framework.workflow import Step, Workflow, WriteAction

TAG = "agent_pipelines"
STEPS = ["read", "propose", "validate"]  # the steps a resumed intent may start from


class IntentConfig(dg.Config):
    intent_id: str


class ApprovalConfig(dg.Config):
    approval_id: str


class ParkConfig(dg.Config):
    park_id: int


class Carry(BaseModel):
    """What flows from step to step (pickled by the IO manager, so re-execution resumes from it)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    intent_id: str
    intake: SerializeAsAny[BaseModel]
    context: SerializeAsAny[BaseModel] | None = None
    proposal: SerializeAsAny[BaseModel] | None = None
    decision: PolicyDecision | None = None
    facts: dict[str, Any] = {}
    plan: tuple[WriteAction, ...] | None = None  # set by an approval: exactly the approved writes
    approval_id: str | None = None
    reuse: tuple[str, ...] = ()  # steps whose persisted output a resumed intent reuses
    receipts: tuple[WriteReceipt, ...] = ()


class StepFailed(Exception):
    """Raised inside a step to end the intent in `state` with `reason` (and fail the op)."""

    def __init__(self, state: S, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason


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


class _StepRun:
    """Per-op helpers: the intent store, a tracer wired to the run log, the gateway, the step context."""

    def __init__(self, wf: Workflow, context: dg.OpExecutionContext, runtime: AgentRuntime, intent_id: str,
                 approval_id: str | None = None, carry: "Carry | None" = None) -> None:
        self.wf, self.ctx, self.runtime = wf, context, runtime
        self.db = runtime.db
        self.store = IntentStore(self.db)
        self.run_id = context.run_id
        self.approval_id = approval_id
        self.carry = carry  # the commit step's input, kept with a park so the release resumes from it
        # Pinned per run by its tags; a run launched without them (a test, the UI launchpad) gets the
        # policy pack's mode, never an operator setting that changed after launch.
        self.mode = Mode(context.run.tags.get(f"{TAG}/mode", wf.policy.rollout.mode))
        self.tracer = Tracer(self.db, workflow=wf.name, intent_id=intent_id, run_id=self.run_id, emit=self._emit,
                             redact_fields=wf.policy.data_handling.redact_fields)
        stats = context.instance.get_run_stats(self.run_id)
        self.budget = RunBudget(self.db, wf.policy.budgets, self.run_id, started_at=stats.start_time)
        self.gateway = ToolGateway(wf.tools(), wf.policy, self.db, self.tracer, mode=self.mode, budget=self.budget)
        self.intent_id = intent_id

    def _emit(self, kind: str, event: dict[str, Any]) -> None:
        self.ctx.log.info(f"trace.{kind} {json.dumps(event, default=str, sort_keys=True)}")

    def intent(self) -> Intent:
        return self.store.get(self.intent_id)

    def step(self) -> Step:
        return Step(intent=self.intent(), tools=self.gateway, run_id=self.run_id, log=self.ctx.log.info)

    def move(self, state: S, reason: str | None = None) -> Intent:
        intent = self.store.transition(self.intent_id, state, reason=reason, run_id=self.run_id)
        self.ctx.log.info(f"intent {self.intent_id} -> {intent.state}" + (f": {intent.reason}" if reason else ""))
        return intent

    @property
    def writes_land(self) -> bool:
        return self.mode not in (Mode.READ_ONLY, Mode.SHADOW)

    def md(self, value: Any) -> dg.MetadataValue:
        """JSON metadata for the run log, redacted like the trace."""
        return dg.MetadataValue.json(self.tracer.redact(json.loads(json.dumps(value, default=str))))

    def park(self, state: S, reason: str) -> None:
        """End this run here with the intent in `state` (no output: later steps are skipped)."""
        self.move(state, reason)
        self.tracer.note("outcome", {"state": state, "reason": reason})

    def output(self, carry: Carry, **extra: Any) -> dg.Output:
        md = {"intent_id": self.intent_id, "mode": str(self.mode), "trace": dg.MetadataValue.json(self.tracer.events),
              **extra}
        return dg.Output(carry, metadata=md)

    def check_events(self, suites: tuple[SuiteResult, ...]) -> None:
        for s in suites:
            self.ctx.log_event(dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(s.asset.split("/")), check_name=s.suite.replace(".", "__"), passed=s.passed,
                metadata={"intent_id": self.intent_id, "evaluated": s.evaluated,
                          "failed": self.md(list(s.failed))}))

    def checkpoint(self) -> None:
        """First thing inside every step's guard: a kill switch parks the intent, an overrun deadline
        quarantines it."""
        with self.db.connect() as conn:
            engaged = controls.blocking(conn, self.wf.name)
        if engaged is not None:
            raise KillSwitchEngaged(engaged)
        self.budget.check_wall()

    @contextmanager
    def guard(self, step_name: str) -> Iterator[None]:
        """Any failure of a step is recorded on the intent with a (redacted) reason before the op fails.
        The original exception is not chained into the Dagster error: its text may hold raw input."""
        try:
            yield
        except KillSwitchEngaged as exc:
            # Parking is an operator's stop, not a failure: the run ends, the intent resumes on release.
            with self.db.begin() as conn:
                controls.park(conn, intent_id=self.intent_id, workflow=self.wf.name, scope=exc.engaged.key,
                              step=step_name, run_id=self.run_id, approval_id=self.approval_id,
                              carry=self.carry.model_dump(mode="json") if self.carry is not None else None)
            if self.intent().state != S.PARKED:
                self.park(S.PARKED, f"{step_name}: {exc}")
        except BudgetExceeded as exc:
            usage = self.budget.usage()
            self.tracer.note("quarantine", {"budget": exc.budget, "limit": exc.limit, "observed": exc.observed,
                                            "detail": exc.detail, "usage": usage, "step": step_name})
            reason = f"{step_name}: {exc}; run usage {usage}"
            self.park(S.QUARANTINED, reason)
            with self.db.begin() as conn:
                approvals.escalate(conn, "budget_exceeded", f"{self.intent_id}:{self.run_id}", self.intent_id,
                                   redact_text(reason))
            raise dg.Failure(f"{step_name}: quarantined: {exc}", allow_retries=False,
                             metadata={"intent_id": self.intent_id, "usage": self.md(usage)}) from None
        except StepFailed as exc:
            self.park(exc.state, exc.reason)
            raise dg.Failure(redact_text(f"{step_name}: {exc.reason}"), metadata={"intent_id": self.intent_id},
                             allow_retries=False) from None
        except dg.Failure:
            raise
        except Exception as exc:
            reason = redact_text(f"{step_name} failed: {type(exc).__name__}: {exc}")
            self.park(S.FAILED, reason[:2000])
            raise dg.Failure(reason, metadata={"intent_id": self.intent_id}, allow_retries=False) from None


def check_preconditions(wf: Workflow, run: _StepRun, carry: Carry) -> None:
    """Before the first write, re-read and compare what the proposal relied on. Once writes exist
    (a re-execution after a crash), the ledger and each write tool's own checks take over: our own
    first writes legitimately changed those records."""
    if has_writes(run.db, carry.intent_id):
        return
    expected = wf.preconditions(carry.context, carry.proposal)
    if not expected:
        return
    fresh = wf.preconditions(wf.read(run.step(), carry.intake), carry.proposal)
    changed = {k: {"read": v, "now": fresh.get(k)} for k, v in expected.items() if fresh.get(k) != v}
    if changed and has_writes(run.db, carry.intent_id):
        # Another run of this same intent started writing meanwhile: the change is our own, and each
        # write below resolves to that run's ledger row.
        run.tracer.note("precondition_changed_by_same_intent", {"changed": changed})
        return
    if changed:
        run.tracer.note("precondition_failed", {"changed": changed})
        raise StepFailed(S.NEEDS_ATTENTION, f"records changed since they were read, nothing written: {changed}")


def carry_from_json(wf: Workflow, data: dict[str, Any]) -> Carry:
    """A Carry stored as JSON (a parked commit), typed back with the workflow's models."""
    return Carry(intent_id=data["intent_id"], intake=wf.intake_model.model_validate(data["intake"]),
                 context=wf.context_model.model_validate(data["context"]),
                 proposal=wf.proposal_model.model_validate(data["proposal"]),
                 decision=PolicyDecision.model_validate(data["decision"]) if data.get("decision") else None,
                 facts=data.get("facts") or {}, approval_id=data.get("approval_id"),
                 plan=tuple(WriteAction.model_validate(w) for w in data["plan"]) if data.get("plan") else None)


def model_messages(wf: Workflow, intake: BaseModel, context: BaseModel) -> list[dict[str, str]]:
    """What the model sees: the workflow's messages, redacted first when the policy says so."""
    messages = wf.messages(intake, context)
    if not wf.policy.data_handling.redact_for_model:
        return messages
    return [{**m, "content": redact_text(m["content"])} for m in messages]


def release_parked(db: Database, intent_id: str) -> None:
    with db.begin() as conn:
        conn.execute(update(parked_intents).where(parked_intents.c.intent_id == intent_id,
                                                  parked_intents.c.released_at.is_(None))
                     .values(released_at=utcnow()))


def parked_continuation(db: Database, intent_id: str) -> str | None:
    """The approval whose continuation run was parked for this intent (None: it parked in the main job)."""
    with db.connect() as conn:
        return conn.execute(select(parked_intents.c.approval_id).where(parked_intents.c.intent_id == intent_id)
                            .order_by(parked_intents.c.id.desc()).limit(1)).scalar()


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
                         model: str) -> dg.RunRequest:
    """The run that commits an approved change (after a decision, or after a kill switch released it)."""
    return dg.RunRequest(run_key=run_key, job_name=w.jobs.after_approval.name,
                         run_config=approved_run_config(w.wf.name, approval_id),
                         tags={**launch_tags(db, w.wf, intent_id, model), f"{TAG}/approval_id": approval_id})


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
        run = _StepRun(wf, context, runtime, config.intent_id)
        intent = run.intent()
        if intent.is_terminal:
            context.log.info(f"intent {intent.intent_id} is already {intent.state}: nothing to do")
            return
        with run.guard("read"):
            run.checkpoint()
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
            run.move(S.RUNNING)
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
        run = _StepRun(wf, context, runtime, carry.intent_id)
        proposer = runtime.proposer()
        with run.guard("propose"):
            run.checkpoint()
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
        run = _StepRun(wf, context, runtime, carry.intent_id)
        with run.guard("validate"):
            run.checkpoint()
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
            planned = [(a.tool, run.gateway.is_high_impact(a.tool))
                        for a in wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)]
            decision = wf.policy.decide(v.facts, planned=planned, mode=run.mode)
            run.tracer.policy("proposal", decision)
            yield run.output(carry.model_copy(update={"decision": decision, "facts": v.facts}),
                             decision=str(decision.decision), rule=decision.rule)

    @dg.op(name=f"{name}__approve_gate", out=opt)
    def approve_gate(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """APPROVE: allow goes on; needs_approval stores the exact change for a human; deny stops."""
        run = _StepRun(wf, context, runtime, carry.intent_id)
        decision = carry.decision
        assert decision is not None
        with run.guard("approve_gate"):
            run.checkpoint()
            if decision.decision == Decision.DENY:
                run.park(S.DENIED, "; ".join(decision.reasons))
                return
            if decision.decision == Decision.NEEDS_APPROVAL and not run.writes_land:
                # read_only/shadow change nothing, so no human is asked; the trace says one would be.
                run.tracer.note("approval_not_requested", {"mode": str(run.mode), "reasons": list(decision.reasons)})
            elif decision.decision == Decision.NEEDS_APPROVAL:
                plan = wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)
                req = approvals.request_approval(
                    run.db, intent_id=carry.intent_id, workflow=wf.name, run_id=run.run_id,
                    ttl_hours=wf.policy.approval.ttl_hours,
                    required_approvals=wf.policy.approval.required_approvals(carry.facts),
                    payload={"writes": [a.model_dump(mode="json") for a in plan],
                             "proposal": carry.proposal.model_dump(mode="json")},
                    evidence={"intake": carry.intake.model_dump(mode="json"),
                              "context": carry.context.model_dump(mode="json"),
                              "policy": decision.model_dump(mode="json"), "facts": carry.facts,
                              "source": run.intent().source_ref},
                    rationale=wf.rationale(carry.intake, carry.context, carry.proposal))
                run.park(S.WAITING_FOR_APPROVAL,
                         f"approval {req['approval_id']} requested: " + "; ".join(decision.reasons))
                return
            yield run.output(carry, decision=str(decision.decision))

    @dg.op(name=f"{name}__commit", out=opt)
    def commit(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """COMMIT: each planned write once, through the gateway and the ledger (within mode and kill switch)."""
        run = _StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
                       carry=carry.model_copy(update={"receipts": ()}))
        with run.guard("commit"):
            run.checkpoint()
            run.move(S.COMMITTING)
            check_preconditions(wf, run, carry)
            receipts: list[WriteReceipt] = []
            plan = carry.plan or wf.plan_writes(carry.intent_id, carry.intake, carry.context, carry.proposal)
            if not run.writes_land:
                receipts = run.gateway.dry_run([(a.tool, a.params, a.action) for a in plan])
                for r in receipts:
                    context.log.info(f"{run.mode}: {r.action} would write {r.table}:{r.key}; "
                                     f"nothing changed in the system of record")
                yield run.output(carry.model_copy(update={"receipts": tuple(receipts)}), writes=0,
                                 would_write=len(receipts))
                return
            for action in plan:
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
            yield run.output(carry.model_copy(update={"receipts": tuple(receipts)}),
                             writes=len(receipts),
                             already_committed=sum(r.status == "already_committed" for r in receipts))

    @dg.op(name=f"{name}__verify", out=opt)
    def verify(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """VERIFY: read back independently and run the post-write suite; mismatch needs attention."""
        run = _StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
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
        run = _StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
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
            taken = approvals.decisions(conn, config.approval_id)
        run = _StepRun(wf, context, runtime, req["intent_id"], approval_id=config.approval_id)
        state = run.intent().state
        if state == S.PARKED and parked_continuation(run.db, req["intent_id"]) == config.approval_id:
            release_parked(run.db, req["intent_id"])
        elif state != S.WAITING_FOR_APPROVAL:
            context.log.info(f"intent {req['intent_id']} is {state}: nothing to continue")
            return
        with run.guard("load_approved"):
            run.checkpoint()
            if req["status"] != approvals.ApprovalStatus.APPROVED:
                raise StepFailed(S.NEEDS_ATTENTION, f"{config.approval_id} is {req['status']}, not approved")
            final = next(d for d in taken if d["decision_id"] == req["final_decision_id"])
            approved_digest = final["edited_digest"] or final["digest_seen"]
            actual = approvals.change_digest(req["approved_payload"])
            if not (actual == req["approved_digest"] == approved_digest):
                raise StepFailed(S.NEEDS_ATTENTION, f"the change stored for {config.approval_id} is not the one "
                                 f"that was approved (digest {actual[:12]} != {approved_digest[:12]}): not committed")
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
        run = _StepRun(wf, context, runtime, park["intent_id"], approval_id=park["approval_id"])
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
