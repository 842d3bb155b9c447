"""Housekeeping of the trace, next to the approvals' (assets/approvals.py): once a day, the payloads past
`AGENT_PIPELINES_TRACE_RETENTION_DAYS` are purged and the purge is chained in the audit log
(framework/retention.py says what is purged and what is kept)."""

import dagster as dg

from agent_pipelines.framework import retention
from agent_pipelines.framework.runtime import AgentRuntime


@dg.op(name="trace_retention__purge")
def purge_expired_trace(context: dg.OpExecutionContext, runtime: AgentRuntime) -> dg.Output:
    report = retention.purge(runtime.db, runtime.approval_key(), runtime.trace_retention_days)
    context.log.info(f"trace retention ({report.retention_days:g} days, before {report.cutoff.isoformat()}): "
                     f"purged {report.purged}; audit event seq {report.audit_seq}")
    return dg.Output(None, metadata={"retention_days": report.retention_days, "cutoff": report.cutoff.isoformat(),
                                     "audit_seq": report.audit_seq,
                                     **{f"purged/{k}": v for k, v in report.purged.items()}})


@dg.job(name="trace_retention", executor_def=dg.in_process_executor,
        description="Purge trace payloads past the retention setting; the audit chain records the counts.")
def retention_job() -> None:
    purge_expired_trace()


retention_schedule = dg.ScheduleDefinition(name="trace_retention__daily", job=retention_job, cron_schedule="15 3 * * *",
                                           default_status=dg.DefaultScheduleStatus.RUNNING)
