"""inputs__on_answer: resume each intent whose missing input was answered (one run per answer)."""

import dagster as dg

from agent_pipelines.framework import inputs
from agent_pipelines.framework.jobs import TAG, run_config
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.workflow import Workflow


def build_input_sensor(main_jobs: dict[str, tuple[Workflow, dg.JobDefinition]]) -> dg.SensorDefinition:
    @dg.sensor(name="inputs__on_answer", jobs=[job for _, job in main_jobs.values()], minimum_interval_seconds=10,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def on_answer(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        """Answered questions of intents still waiting_for_input; the intent state is the cursor."""
        requests = []
        for req in inputs.answered_waiting(runtime.db):
            if req["workflow"] not in main_jobs:
                continue
            wf, job = main_jobs[req["workflow"]]
            requests.append(dg.RunRequest(
                run_key=f"input:{req['request_id']}", job_name=job.name, run_config=run_config(wf, req["intent_id"]),
                tags={f"{TAG}/workflow": wf.name, f"{TAG}/intent_id": req["intent_id"],
                      f"{TAG}/input_request": req["request_id"]}))
        if not requests:
            return dg.SkipReason("no answered questions waiting to resume")
        return dg.SensorResult(run_requests=requests)

    return on_answer
