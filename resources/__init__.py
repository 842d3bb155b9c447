"""The deployment's Dagster resources, built from Settings (the one place configuration is read)."""

import dagster as dg

from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.settings import Settings
from resources.inbox import InboxResource


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        "runtime": AgentRuntime.from_config(settings.db_url, settings.llm, lease_seconds=settings.lease_seconds,
                                            recovery_backoff_s=settings.recovery_backoff_s,
                                            state_dir=str(settings.state_dir)),
        "invoice_inbox": InboxResource(path=str(settings.invoice_inbox), settle_seconds=settings.inbox_settle_seconds),
        # Persisted step outputs, so a failed run can be re-executed from failure in the UI.
        "io_manager": dg.FilesystemIOManager(),
    }
