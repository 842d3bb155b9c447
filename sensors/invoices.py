"""invoice_matching__on_new_invoice: one intent and one run per new file in the invoice inbox."""

import dagster as dg

from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.triggers import InboxCursor, launch_stopped, register_file, run_request
from agent_pipelines.framework.workflow import Workflow
from resources.inbox import InboxResource

BATCH = 200  # files per tick: keeps a tick well inside the sensor gRPC timeout


def build_invoice_sensor(wf: Workflow, job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(name=f"{wf.name}__on_new_invoice", job=job, minimum_interval_seconds=10,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def on_new_invoice(context: dg.SensorEvaluationContext, runtime: AgentRuntime,
                       invoice_inbox: InboxResource) -> dg.SensorResult | dg.SkipReason:
        """Register each new invoice file as an intent; unreadable files are recorded, not launched."""
        if stopped := launch_stopped(runtime.db, wf.name):
            return stopped
        cursor = InboxCursor.parse(context.cursor)
        new = cursor.new_files(invoice_inbox.root)[:BATCH]
        if not new:
            return dg.SkipReason(f"no new files in {invoice_inbox.root}")
        from agent_pipelines.workflows.invoice_matching.parsing import parse_invoice

        store = IntentStore(runtime.db)
        model = runtime.proposer().model_name
        requests: dict[str, dg.RunRequest] = {}
        rejected = 0
        for _, path in new:
            intent, _created = register_file(store, wf, path, parse_invoice)
            if intent.state == "rejected_input":
                rejected += 1
                context.log.info(f"{path.name}: {intent.reason}")
            elif not intent.is_terminal:
                requests[intent.intent_id] = run_request(runtime.db, wf, intent, model=model)
        context.log.info(f"{len(new)} file(s): {len(requests)} run request(s), {rejected} rejected")
        # Same bytes under two names give the same intent and run_key: Dagster launches it once.
        return dg.SensorResult(run_requests=list(requests.values()), cursor=cursor.advance(new).model_dump_json())

    return on_new_invoice
