"""Turns a Workflow into its Dagster jobs: read -> propose -> validate -> approve-gate -> commit -> verify
-> hand off, for one intent per run (here) or a batch of intents per run (batch.py). Both are thin
shells around the same step functions (agent_steps.py), which wrap the workflow's steps with the
framework's guarantees, so a workflow never writes its own state handling, ledger, policy or tracing.
An op that parks the intent (waiting, denied, rejected) emits no output and Dagster shows the later
steps as skipped."""

from collections.abc import Iterator
from typing import Any, NamedTuple

import dagster as dg
from agent_pipelines.framework import agent_steps as steps
from agent_pipelines.framework import approvals, controls
from agent_pipelines.framework.batch import build_batch_job
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.policy import Mode
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.steps import TAG, Carry, StepRun
from agent_pipelines.framework.workflow import Validation, Verification, Workflow

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
    main: dg.JobDefinition  # one intent per run: small volumes, recovery, re-execution from the UI
    after_approval: dg.JobDefinition
    resume: dg.JobDefinition
    batch: dg.JobDefinition  # many intents per run, same steps (batch.py): what a flood is launched as


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


def build_job(wf: Workflow, *, tags: dict[str, str] | None = None) -> dg.JobDefinition:
    return build_jobs(wf, tags=tags).main


def build_jobs(wf: Workflow, *, tags: dict[str, str] | None = None) -> AgentJobs:
    name = wf.name
    if wf.proposal_model.model_config.get("extra") != "forbid":
        # The proposal is the model's only output: a field it invents (a tool, a recipient, "approved")
        # must fail validation, not be silently dropped or carried along.
        raise TypeError(f"{wf.proposal_model.__name__} must set model_config extra='forbid'")
    opt = dg.Out(Carry, is_required=False)

    def out(run: StepRun, advance: steps.Advance | None, last: bool = False) -> Iterator[dg.Output]:
        if advance is None or last:  # this run is done with the intent
            run.finish_trace()
        if advance is not None:
            yield run.output(advance.carry, **advance.metadata)

    @dg.op(name=f"{name}__read", out=opt)
    def read(context: dg.OpExecutionContext, config: IntentConfig, runtime: AgentRuntime) -> Iterator[dg.Output]:
        """READ: load the intent and the minimum context through read-only tools."""
        run = StepRun(wf, context, runtime, config.intent_id)
        runtime.warm_up()  # the model client and Great Expectations: seconds of imports in a new worker
        yield from out(run, steps.read(wf, run))

    @dg.op(name=f"{name}__propose", out=opt)
    def propose(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """PROPOSE: the LLM (or the offline proposer) returns a typed proposal; it decides nothing."""
        run = StepRun(wf, context, runtime, carry.intent_id)
        yield from out(run, steps.propose(wf, run, carry, runtime.proposer()))

    @dg.op(name=f"{name}__validate", out=opt)
    def validate(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """VALIDATE: workflow rules, pre-write suite, dedupe, then the policy decision."""
        run = StepRun(wf, context, runtime, carry.intent_id)
        ruled = steps.validate_rules(wf, run, carry)
        if isinstance(ruled, Validation):
            with run.keeping_claim():
                ruled = steps.with_suites(ruled)
            ruled = steps.validate_decide(wf, run, carry, ruled)
        yield from out(run, ruled)

    @dg.op(name=f"{name}__approve_gate", out=opt)
    def approve_gate(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """APPROVE: allow goes on; needs_approval stores the exact change for a human; deny stops."""
        run = StepRun(wf, context, runtime, carry.intent_id)
        yield from out(run, steps.approve_gate(wf, run, carry))

    @dg.op(name=f"{name}__commit", out=opt)
    def commit(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """COMMIT: each planned write once, through the gateway and the ledger (within mode and kill switch)."""
        run = StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
                      carry=carry.model_copy(update={"receipts": ()}))
        yield from out(run, steps.commit(wf, run, carry))

    @dg.op(name=f"{name}__verify", out=opt)
    def verify(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """VERIFY: read back independently and run the post-write suite; mismatch needs attention."""
        run = StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
                      carry=carry.model_copy(update={"receipts": ()}))
        back = steps.verify_read_back(wf, run, carry)
        if isinstance(back, Verification):
            with run.keeping_claim():
                back = steps.with_suites(back)
            back = steps.verify_decide(run, carry, back)
        yield from out(run, back)

    @dg.op(name=f"{name}__hand_off", out=opt)
    def hand_off(context: dg.OpExecutionContext, runtime: AgentRuntime, carry: Carry) -> Iterator[dg.Output]:
        """HAND OFF: complete the intent with a summary and pointers to the records and the trace."""
        run = StepRun(wf, context, runtime, carry.intent_id, approval_id=carry.approval_id,
                      carry=carry.model_copy(update={"receipts": ()}))
        yield from out(run, steps.hand_off(run, carry), last=True)

    @dg.op(name=f"{name}__load_approved", out=opt)
    def load_approved(context: dg.OpExecutionContext, config: ApprovalConfig,
                      runtime: AgentRuntime) -> Iterator[dg.Output]:
        """APPROVED: load the decided change; go on only if it is exactly what was approved."""
        with runtime.db.connect() as conn:
            req = approvals.get(conn, config.approval_id)
        run = StepRun(wf, context, runtime, req["intent_id"], approval_id=config.approval_id)
        yield from out(run, steps.load_approved(wf, run, config.approval_id))

    @dg.op(name=f"{name}__load_parked", out=opt)
    def load_parked(context: dg.OpExecutionContext, config: ParkConfig, runtime: AgentRuntime) -> Iterator[dg.Output]:
        """RELEASED: continue an intent a kill switch parked at commit or later, from the change it had
        decided (commit again is safe: the ledger returns the writes that already landed)."""
        with runtime.db.connect() as conn:
            park = controls.get_park(conn, config.park_id)
        run = StepRun(wf, context, runtime, park["intent_id"], approval_id=park["approval_id"])
        yield from out(run, steps.load_parked(wf, run, park))

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

    return AgentJobs(main=agent_job, after_approval=after_approval_job, resume=resume_job,
                     batch=build_batch_job(wf, tags=job_tags))
