"""crm_hygiene__daily_scan: once a day, scan the CRM for stale opportunities (workflows/crm_hygiene/tools.py
`scan_stale`: the one scan) and register one intent per stale opportunity, identified by the opportunity
id and the version the scan saw. A re-scan of an unchanged record finds its intent and launches nothing;
an opportunity updated since is a new version, and so a new intent if it is still stale.

A schedule, with `agent_pipelines/tick` metadata so `agent-pipelines tick` (runner.py) evaluates it like
the daemon would at its time. Each intent gets its own run (run_key = intent id) on the workflow's job: a
schedule targets one job, and a day's stale opportunities are a trickle, not a flood."""

import json

import dagster as dg

from agent_pipelines.framework.tools import PermanentToolError, RetryableToolError
from agent_pipelines.framework.intents import (
    Intent,
    IntentStore,
    digest,
    record_intent_id,
)
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.triggers import launch_requests, launch_stopped
from agent_pipelines.framework.workflow import Workflow
from agent_pipelines.runner import (
    TICKABLE,  # runner.tick evaluates schedules carrying this metadata
)
from agent_pipelines.workflows.crm_hygiene.models import StaleOpportunity
from agent_pipelines.workflows.crm_hygiene.tools import scan_stale


def register_stale(store: IntentStore, wf: Workflow, stale: StaleOpportunity) -> tuple[Intent, bool]:
    data = json.loads(stale.model_dump_json())
    return store.register(intent_id=record_intent_id(wf.name, stale.opportunity_id, stale.version), workflow=wf.name,
                          correlation_id=stale.opportunity_id[:200],
                          source_ref=f"crm.opportunities:{stale.opportunity_id}@{stale.version}",
                          source_digest=digest(json.dumps(data, sort_keys=True)), intake=data)


def scan(runtime: AgentRuntime, wf: Workflow) -> list[dg.RunRequest] | dg.SkipReason:
    """Register the stale opportunities; a run for each new one."""
    if stopped := launch_stopped(runtime.db, wf.name):
        return stopped
    try:
        found = scan_stale()
    except (PermanentToolError, RetryableToolError) as exc:  # no CRM configured, or it is down: next time
        return dg.SkipReason(f"{wf.name}: the CRM scan failed: {exc}")
    store = IntentStore(runtime.db)
    new = [intent for intent, created in (register_stale(store, wf, s) for s in found) if created]
    if not new:
        return dg.SkipReason("no newly stale opportunity")
    return launch_requests(runtime.db, wf, new, runtime.proposer().model_name, runtime.batch_max_size,
                           batched=False)


def build_crm_schedule(wf: Workflow, job: dg.JobDefinition, cron: str = "0 7 * * *") -> dg.ScheduleDefinition:
    @dg.schedule(cron_schedule=cron, job=job, name=f"{wf.name}__daily_scan", metadata={TICKABLE: True},
                 default_status=dg.DefaultScheduleStatus.RUNNING,
                 description="Daily: register each stale CRM opportunity (no next step, or notes since its last "
                             "update) as an intent, once per version, and run it.")
    def daily_scan(context: dg.ScheduleEvaluationContext, runtime: AgentRuntime) -> list[dg.RunRequest] | dg.SkipReason:
        return scan(runtime, wf)

    return daily_scan
