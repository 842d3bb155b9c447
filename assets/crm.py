"""The CRM's opportunities as an external system-of-record asset: crm_hygiene's commits materialize
sor/crm.opportunities, VERIFY logs its post-write suite on it, and this check runs the table suite over
every opportunity the CRM holds (read through its API at AGENT_PIPELINES_CRM_URL)."""

import dagster as dg

from agent_pipelines.framework.external import read_json, service_url_var
from agent_pipelines.framework.tools import PermanentToolError, RetryableToolError
from agent_pipelines.workflows.crm_hygiene import expectations

CRM_OPPORTUNITIES = dg.AssetKey(expectations.ASSET.split("/"))

CRM_SPECS = [dg.AssetSpec(CRM_OPPORTUNITIES, group_name="system_of_record", kinds={"api"},
                          description="Opportunities in the CRM (an external API); crm_hygiene updates their stage "
                                      "and next step with If-Match.")]


@dg.asset_check(asset=CRM_OPPORTUNITIES, name="crm_opportunities__table",
                description="Every opportunity: a known stage, a unique id, a version, a non-negative amount.")
def crm_opportunities_table() -> dg.AssetCheckResult:
    try:
        data = read_json("crm", "/opportunities") or {}
    except (PermanentToolError, RetryableToolError) as exc:  # the CRM is not configured or not answering
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"error": f"{exc}", "url_variable": service_url_var("crm")})
    rows = data.get("data") or []
    if not rows:
        return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
    result = expectations.table_check(rows)
    return dg.AssetCheckResult(passed=result.passed, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"rows": len(rows), "evaluated": result.evaluated,
                                         "failed": dg.MetadataValue.json(list(result.failed))})


# Its own job: the CRM is another service, so its check runs (and fails loudly) apart from our tables'.
crm_check_job = dg.define_asset_job("crm_hygiene__checks", selection=dg.AssetSelection.checks(crm_opportunities_table),
                                    executor_def=dg.in_process_executor)
crm_check_schedule = dg.ScheduleDefinition(name="crm_hygiene__checks_daily", job=crm_check_job,
                                           cron_schedule="45 6 * * *", default_status=dg.DefaultScheduleStatus.RUNNING)
