"""The real invoice batch job for the Celery tests, built by a module-level factory: `dg.reconstructable`
stores a pointer to it, and every process (the orchestrating run, each Celery worker running a step)
calls it again, building the job with `batch_executor()` from its own environment. The database comes
from run config (resources.runtime.config.db_url): step outputs live there (StepStore), so workers on
other machines share them through the database, not a shared folder."""

import dagster as dg

from agent_pipelines.framework.jobs import build_jobs
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.step_store import StepStore
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching


def invoice_batch_job() -> dg.JobDefinition:
    wf = InvoiceMatching()
    runtime = AgentRuntime.configure_at_launch()
    defs = dg.Definitions(jobs=[build_jobs(wf).batch], resources={"runtime": runtime, "io_manager": StepStore(runtime=runtime)})
    return defs.get_job_def(f"{wf.name}__batch")
