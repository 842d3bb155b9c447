"""invoice_matching__on_new_invoice: one intent and one run per new file in the invoice inbox. Files are
known by identity in `inbox_files` (framework.inbox), not by mtime or Dagster's cursor, so `tick` and
the daemon share what they have seen."""

import json
from collections.abc import Callable

import dagster as dg
from pydantic import BaseModel

from agent_pipelines.framework.inbox import ingest_inbox, wait_for_new_files
from agent_pipelines.framework.intents import Intent, IntentStore
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.triggers import TRIGGER_INTERVAL_S, launch_requests, launch_stopped, runs_in_flight
from agent_pipelines.framework.workflow import Workflow
from resources.inbox import InboxResource


def _parse_invoice(name: str, content: bytes) -> BaseModel:
    from agent_pipelines.workflows.invoice_matching.parsing import parse_invoice

    return parse_invoice(name, content)


def build_invoice_sensor(wf: Workflow, job: dg.JobDefinition,
                         parse: Callable[[str, bytes], BaseModel] = _parse_invoice,
                         batch: dg.JobDefinition | None = None) -> dg.SensorDefinition:
    name = f"{wf.name}__on_new_invoice"

    @dg.sensor(name=name, jobs=[job, *([batch] if batch else [])], minimum_interval_seconds=TRIGGER_INTERVAL_S,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def on_new_invoice(context: dg.SensorEvaluationContext, runtime: AgentRuntime,
                       invoice_inbox: InboxResource) -> dg.SensorResult | dg.SkipReason:
        """Register each new invoice file as an intent; unreadable files are recorded, not launched."""
        if stopped := launch_stopped(runtime.db, wf.name):
            return stopped
        if invoice_inbox.watch_seconds and wait_for_new_files(runtime.db, name, invoice_inbox.root,
                                                              settle_s=invoice_inbox.settle_seconds,
                                                              seconds=invoice_inbox.watch_seconds):
            # the kill switch may have been engaged while this tick watched the folder
            if stopped := launch_stopped(runtime.db, wf.name):
                return stopped
        store = IntentStore(runtime.db)
        done = ingest_inbox(store, wf, name, invoice_inbox.root, parse, settle_s=invoice_inbox.settle_seconds,
                            log=context.log)
        # Dagster's cursor is for display only: the truth is the inbox_files table.
        display = json.dumps({"known_files": done.known})
        if not done.registered and done.error is None:
            waiting = f" ({done.unsettled} still being written)" if done.unsettled else ""
            return dg.SkipReason(f"no new files in {invoice_inbox.root}{waiting}")
        model = runtime.proposer().model_name
        launch: dict[str, Intent] = {}
        rejected = 0
        for intent in done.registered:
            if intent.state == IntentState.REJECTED_INPUT:
                rejected += 1
                context.log.info(f"{intent.source_ref.rsplit('/', 1)[-1]}: {intent.reason}")
            elif not intent.is_terminal:
                # Same bytes under two names give the same intent and run_key: Dagster launches it once.
                launch[intent.intent_id] = intent
        # One file: its own run, at once; a flood, or files arriving faster than runs finish: batch runs
        # (adaptive batching, triggers.launch_requests).
        requests = launch_requests(runtime.db, wf, list(launch.values()), model, runtime.batch_max_size,
                                   runtime.batch_min_size, batched=batch is not None,
                                   in_flight=runs_in_flight(context.instance, wf) if len(launch) > 1 else 0)
        context.log.info(f"{len(done.registered)} new file(s): {len(launch)} intent(s) in {len(requests)} run "
                         f"request(s), {rejected} rejected" + (", more next tick" if done.more else ""))
        return dg.SensorResult(run_requests=requests, cursor=display)

    return on_new_invoice
