"""Helpers shared by tests: register an invoice intent without the sensor, and run the job."""

from typing import Any

import dagster as dg

from agent_pipelines.framework.intents import IntentStore, file_intent_id
from agent_pipelines.framework.jobs import run_config, run_tags
from agent_pipelines.project import Project
from agent_pipelines.workflows.invoice_matching.models import InvoiceIntake, InvoiceLine
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

WF = InvoiceMatching()


def intake(**overrides: Any) -> InvoiceIntake:
    base: dict[str, Any] = dict(
        source_name="inv-100.json", format="json", vendor_ref="V-1", invoice_number="INV-100", po_number="PO-1",
        currency="USD", total_cents=100_000,
        lines=(InvoiceLine(description="Hex bolts M8", sku="BLT-8", quantity=100, unit_price_cents=500,
                           amount_cents=50_000),
               InvoiceLine(description="Steel bracket", sku="BRK-1", quantity=50, unit_price_cents=1000,
                           amount_cents=50_000)),
        memo="thanks")
    base.update(overrides)
    return InvoiceIntake(**base)


def register(project: Project, data: InvoiceIntake) -> str:
    intent_id = file_intent_id(WF.name, data.model_dump_json().encode())
    IntentStore(project.db).register(intent_id=intent_id, workflow=WF.name, correlation_id=data.source_name,
                                     source_ref=data.source_name, source_digest="0" * 64,
                                     intake=data.model_dump(mode="json"))
    return intent_id


def run_intent(project: Project, intent_id: str, job_name: str = "invoice_matching") -> dg.ExecuteInProcessResult:
    job = project.definitions.get_job_def(job_name)
    return job.execute_in_process(run_config=run_config(WF, intent_id), instance=project.instance,
                                  tags=run_tags(WF, intent_id, model="offline-rules"), raise_on_error=False)


def state(project: Project, intent_id: str) -> str:
    return str(IntentStore(project.db).get(intent_id).state)


def run_in_process(db_url: str, state_dir: str, intent_id: str, barrier: Any) -> bool:
    """Entry point of a separate worker process (spawn): waits for its peer, then runs the intent, as
    two run workers of a deployment would."""
    import os

    from agent_pipelines.settings import Settings

    project = Project(Settings.from_env(state_dir, env={"AGENT_PIPELINES_DB_URL": db_url}))
    project.prepare()
    os.environ["DAGSTER_HOME"] = str(project.settings.dagster_home)
    barrier.wait(timeout=60)
    return run_intent(project, intent_id).success


def reviewer(project: Project, name: str) -> Any:
    """An authenticated reviewer `name` (registered with a token on first use in this project)."""
    from agent_pipelines.framework import reviewers

    known = project.__dict__.setdefault("_test_reviewers", {})
    name = name.strip()  # registration strips the name too: " alice " is alice
    if name not in known:
        _, token = reviewers.add(project.db, project.approval_key, name)
        known[name] = reviewers.authenticate(project.db, project.approval_key, token)
    return known[name]


def decide_as(project: Project, pack: Any, approval_id: str, name: str, kind: str = "approve", **kw: Any) -> Any:
    """`approvals.decide` as reviewer `name`, under `pack` (a workflow's PolicyPack), signed with the project's key."""
    from agent_pipelines.framework import approvals

    return approvals.decide(project.db, pack, approval_id, reviewer=reviewer(project, name), key=project.approval_key,
                            kind=approvals.DecisionKind(kind), **kw)
