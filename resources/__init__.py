"""The deployment's Dagster resources, built from Settings (the one place configuration is read)."""

import os

from agent_pipelines.framework.runtime import AgentRuntime, env_secret
from agent_pipelines.framework.scorecard_alerts import AlertWebhook
from agent_pipelines.framework.step_store import StepStore
from agent_pipelines.settings import Settings
from resources.inbox import InboxResource


def build_resources(settings: Settings) -> dict[str, object]:
    runtime = AgentRuntime.from_config(settings.db_url, settings.llm, lease_seconds=settings.lease_seconds,
                                       recovery_backoff_s=settings.recovery_backoff_s,
                                       state_dir=str(settings.state_dir), notify=settings.notify,
                                       console_url=settings.console_url, batch_max_size=settings.batch_max_size,
                                       batch_min_size=settings.batch_min_size,
                                       trace_retention_days=settings.trace_retention_days)
    # incident_triage's read tools get a connection, not the settings: they find the diagnostics folder
    # here (inherited by run workers, like DAGSTER_HOME). Imported lazily: no workflow at module load.
    from agent_pipelines.workflows.incident_triage.tools import DIAGNOSTICS_ENV

    os.environ[DIAGNOSTICS_ENV] = str(settings.diagnostics_folder)
    return {
        "runtime": runtime,
        "invoice_inbox": InboxResource(path=str(settings.invoice_inbox), settle_seconds=settings.inbox_settle_seconds,
                                       watch_seconds=settings.inbox_watch_seconds),
        # Persisted step outputs, so a failed run can be re-executed from failure in the UI. In our
        # database, not Dagster's storage: an output carries the raw intake (secrets, PII).
        "io_manager": StepStore(runtime=runtime),
        # Failed scorecard checks are posted here (assets/scorecard.py); the URL passes as an EnvVar.
        "alerts": AlertWebhook(webhook_url=env_secret(settings.alert_webhook_url, "AGENT_PIPELINES_ALERT_WEBHOOK_URL"),
                               timeout_s=settings.alert_timeout_s, dagster_url=settings.dagster_url),
    }
