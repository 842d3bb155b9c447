"""Approval triggers: launch the one continuation run of each approved request (run_key = the id
of the decision that completed it), and the housekeeping run when requests are overdue."""

import dagster as dg

from agent_pipelines.framework import approvals, inputs
from agent_pipelines.framework.approvals import aware
from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.jobs import TAG, WorkflowJobs, continuation_request
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.triggers import TRIGGER_INTERVAL_S, launch_stopped


def build_approval_sensors(shipped: dict[str, WorkflowJobs], housekeeping_job: object) -> list[dg.SensorDefinition]:
    @dg.sensor(name="approvals__on_decision", jobs=[w.jobs.after_approval for w in shipped.values()],
               minimum_interval_seconds=TRIGGER_INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING)
    def on_decision(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        """One continuation run per approved request whose intent still waits."""
        # The intent state is the cursor: once the continuation runs, the intent leaves
        # waiting_for_approval and the request is no longer listed; run_key guards the gap.
        requests, stopped = [], []
        for req in approvals.ready_to_continue(runtime.db):
            if req["workflow"] not in shipped:
                continue
            if skip := launch_stopped(runtime.db, req["workflow"]):
                stopped.append(skip.skip_message)
                continue
            w = shipped[req["workflow"]]
            requests.append(continuation_request(runtime.db, w, req["intent_id"], req["approval_id"],
                                                 run_key=req["final_decision_id"],
                                                 model=runtime.proposer().model_name))
        if not requests:
            return dg.SkipReason("; ".join(sorted(set(stopped))) or
                                 "no approved requests waiting for their continuation")
        return dg.SensorResult(run_requests=requests)

    @dg.sensor(name="approvals__on_expiry", job=housekeeping_job, minimum_interval_seconds=60,  # type: ignore[arg-type]
               default_status=dg.DefaultSensorStatus.RUNNING)
    def on_expiry(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.RunRequest | dg.SkipReason:
        """Run housekeeping when a pending approval request or input question is past its expiry."""
        now = utcnow()
        overdue = sorted([r["approval_id"] for r in approvals.pending(runtime.db) if aware(r["expires_at"]) <= now]
                         + inputs.overdue(runtime.db, now))
        if not overdue:
            return dg.SkipReason("no overdue approval requests or questions")
        return dg.RunRequest(run_key="expire:" + approvals.change_digest(overdue)[:20])

    return [on_decision, on_expiry]


def build_failure_sensor(monitored: list[dg.JobDefinition]) -> dg.SensorDefinition:
    @dg.run_failure_sensor(name="agent_runs__on_failure", monitored_jobs=monitored,
                           default_status=dg.DefaultSensorStatus.RUNNING)
    def on_failure(context: dg.RunFailureSensorContext, runtime: AgentRuntime) -> None:
        """Alert: every failed agent run becomes an escalation a person works through."""
        run = context.dagster_run
        with runtime.db.begin() as conn:
            approvals.escalate(conn, "run_failed", run.run_id, run.tags.get(f"{TAG}/intent_id"),
                               f"{run.job_name} run {run.run_id} failed: {context.failure_event.message}")

    return on_failure
