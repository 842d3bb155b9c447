"""The approval queue where operators monitor runs: an asset whose metadata is the table of pending
requests with their age, refreshed by housekeeping, which also expires and escalates overdue ones."""

import dagster as dg

from agent_pipelines.framework import approvals, inputs
from agent_pipelines.framework.approvals import aware
from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.runtime import AgentRuntime

PENDING_QUEUE = dg.AssetKey(["approvals", "pending_queue"])


@dg.asset(key=PENDING_QUEUE, group_name="approvals", kinds={"sql"},
          description="Pending approval requests (exact change, digest, age, expiry). Overdue approval "
                      "requests and input questions are expired and escalated when this refreshes.")
def pending_queue(context: dg.AssetExecutionContext, runtime: AgentRuntime) -> dg.MaterializeResult:
    expired = approvals.expire_overdue(runtime.db, runtime.approval_key())
    for req in expired:
        context.log.warning(f"ESCALATION: approval {req['approval_id']} ({req['workflow']}, intent "
                            f"{req['intent_id']}) expired unanswered")
    for q in inputs.expire_overdue(runtime.db):
        context.log.warning(f"ESCALATION: intent {q['intent_id']} got no answer to {q['field']!r}; expired")
    now = utcnow()
    rows = approvals.pending(runtime.db)
    table = dg.TableRecord
    records = [table({
        "approval_id": r["approval_id"], "workflow": r["workflow"], "intent_id": r["intent_id"],
        "age_hours": round((now - aware(r["created_at"])).total_seconds() / 3600, 2),
        "expires_in_hours": round((aware(r["expires_at"]) - now).total_seconds() / 3600, 2),
        "approvals_needed": r["required_approvals"], "rule": r["evidence"].get("policy", {}).get("rule", ""),
        "digest": r["digest"][:12]}) for r in rows]
    schema = dg.TableSchema(columns=[dg.TableColumn(n, t) for n, t in (
        ("approval_id", "string"), ("workflow", "string"), ("intent_id", "string"), ("age_hours", "float"),
        ("expires_in_hours", "float"), ("approvals_needed", "int"), ("rule", "string"), ("digest", "string"))])
    return dg.MaterializeResult(metadata={
        "pending": len(rows), "expired_now": len(expired),
        "oldest_age_hours": max((rec.data["age_hours"] for rec in records), default=0.0),
        "queue": dg.MetadataValue.table(records, schema=schema)})


housekeeping_job = dg.define_asset_job("approvals__housekeeping", selection=[PENDING_QUEUE],
                                       executor_def=dg.in_process_executor)
housekeeping_schedule = dg.ScheduleDefinition(name="approvals__housekeeping_every_15m", job=housekeeping_job,
                                              cron_schedule="*/15 * * * *",
                                              default_status=dg.DefaultScheduleStatus.RUNNING)
