"""recovery__sweeper: finish what was started. Every tick (the daemon's, or `agent-pipelines tick`) it
launches one recovery run for each intent that no live run owns although it is neither finished nor
waiting (`framework.recovery`), and files an escalation for those that used up their attempts."""

import dagster as dg

from agent_pipelines.framework.jobs import TAG, WorkflowJobs, continuation_request, launch_tags, run_config
from agent_pipelines.framework.recovery import Sweeper
from agent_pipelines.framework.runtime import AgentRuntime


def build_recovery_sensor(shipped: dict[str, WorkflowJobs]) -> dg.SensorDefinition:
    @dg.sensor(name="recovery__sweeper", jobs=[j for w in shipped.values() for j in (w.jobs.main, w.jobs.after_approval)],
               minimum_interval_seconds=5,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def sweeper(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        """Recovery runs for stranded intents (lease expired or run gone), bounded attempts, then escalation."""
        model = runtime.proposer().model_name

        def request(workflow: str, intent_id: str, attempt: int, approval_id: str | None) -> dg.RunRequest:
            w, run_key, tag = shipped[workflow], f"recover:{intent_id}:{attempt}", {f"{TAG}/recovery_attempt": str(attempt)}
            if approval_id is not None:
                return continuation_request(runtime.db, w, intent_id, approval_id, run_key=run_key, model=model,
                                            extra_tags=tag)
            return dg.RunRequest(run_key=run_key, job_name=w.jobs.main.name, run_config=run_config(w.wf, intent_id),
                                 tags={**launch_tags(runtime.db, w.wf, intent_id, model), **tag})

        out = Sweeper(runtime.db, context.instance, {name: w.wf for name, w in shipped.items()},
                      lease_s=runtime.lease_seconds, backoff_s=runtime.recovery_backoff_s).sweep(request)
        for run_id in out.marked_failed:
            context.log.info(f"run {run_id}: marked failed (its worker stopped renewing the intent's claim)")
        for intent_id in out.gave_up:
            context.log.info(f"intent {intent_id}: recovery attempts used up: needs attention (escalated)")
        if not out.run_requests:
            return dg.SkipReason(f"nothing to recover ({len(out.gave_up)} escalated, "
                                 f"{len(out.waiting_on_run)} still have a run on its way)")
        context.log.info(f"{len(out.run_requests)} recovery run(s)")
        return dg.SensorResult(run_requests=out.run_requests)

    return sweeper
