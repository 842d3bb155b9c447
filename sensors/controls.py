"""killswitch__on_release: when a kill switch is turned off, resume the intents it parked.

An intent parked at commit or later continues from the change it had decided (the resume job: commit
again, where the ledger returns the writes that already landed, then verify); one parked earlier in
its main run restarts from READ (nothing was written); one parked in an approved continuation before
its commit re-runs that continuation, which re-checks the approved digest. run_key = the park record,
so each parking resumes once."""

import dagster as dg

from agent_pipelines.framework import controls
from agent_pipelines.framework.jobs import WorkflowJobs, continuation_request, launch_tags, run_config
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.triggers import TRIGGER_INTERVAL_S


def build_release_sensor(shipped: dict[str, WorkflowJobs]) -> dg.SensorDefinition:
    jobs = [job for w in shipped.values() for job in w.jobs]

    @dg.sensor(name="killswitch__on_release", jobs=jobs, minimum_interval_seconds=TRIGGER_INTERVAL_S,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def on_release(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        """One resume run per parked intent whose kill switches are all off."""
        model = runtime.proposer().model_name
        requests = []
        for parked in controls.releasable(runtime.db):
            w = shipped.get(parked["workflow"])
            if w is None:
                continue
            run_key = f"release:{parked['id']}"
            if parked["carry"] is not None:  # parked at commit or later: continue the decided change
                requests.append(dg.RunRequest(
                    run_key=run_key, job_name=w.jobs.resume.name,
                    run_config={"ops": {f"{w.wf.name}__load_parked": {"config": {"park_id": parked["id"]}}}},
                    tags=launch_tags(runtime.db, w.wf, parked["intent_id"], model)))
            elif parked["approval_id"]:
                requests.append(continuation_request(runtime.db, w, parked["intent_id"], parked["approval_id"],
                                                     run_key=run_key, model=model))
            else:
                requests.append(dg.RunRequest(run_key=run_key, job_name=w.jobs.main.name,
                                              run_config=run_config(w.wf, parked["intent_id"]),
                                              tags=launch_tags(runtime.db, w.wf, parked["intent_id"], model)))
        if not requests:
            return dg.SkipReason("no parked intents to release")
        return dg.SensorResult(run_requests=requests)

    return on_release
