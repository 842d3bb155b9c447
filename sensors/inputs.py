"""inputs__on_answer: resume each intent whose missing input was answered (one run per answer)."""

import dagster as dg

from agent_pipelines.framework import inputs
from agent_pipelines.framework.jobs import TAG, WorkflowJobs, launch_tags, run_config
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.triggers import TRIGGER_INTERVAL_S, launch_stopped


def build_input_sensor(shipped: dict[str, WorkflowJobs]) -> dg.SensorDefinition:
    @dg.sensor(name="inputs__on_answer", jobs=[w.jobs.main for w in shipped.values()], minimum_interval_seconds=TRIGGER_INTERVAL_S,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def on_answer(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        """Answered questions of intents still waiting_for_input; the intent state is the cursor."""
        requests, stopped = [], []
        model = runtime.proposer().model_name
        for req in inputs.answered_waiting(runtime.db):
            if req["workflow"] not in shipped:
                continue
            if skip := launch_stopped(runtime.db, req["workflow"]):
                stopped.append(skip.skip_message)
                continue
            wf, job = shipped[req["workflow"]].wf, shipped[req["workflow"]].jobs.main
            requests.append(dg.RunRequest(
                run_key=f"input:{req['request_id']}", job_name=job.name, run_config=run_config(wf, req["intent_id"]),
                tags={**launch_tags(runtime.db, wf, req["intent_id"], model),
                      f"{TAG}/input_request": req["request_id"]}))
        if not requests:
            return dg.SkipReason("; ".join(sorted(set(stopped))) or "no answered questions waiting to resume")
        return dg.SensorResult(run_requests=requests)

    return on_answer
