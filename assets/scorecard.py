"""The scorecard in the Dagster UI: one asset per workflow (`scorecard/<workflow>`), partitioned by day
(UTC), whose materialization metadata holds the day's figures (framework/scorecard.py) so the asset's
Plots tab charts each over the days, and whose checks (framework/scorecard_alerts.py) compare the day
with the one before and post an alert when they fail.

One asset per workflow rather than a workflow x day grid: each workflow then has its own chart per
figure, and its own check history. The `scorecard__daily` schedule materializes yesterday's complete
day shortly after midnight UTC; today's partition exists too (a partial day), for a look from the UI."""

from datetime import date, timedelta

import dagster as dg

from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.scorecard import compute
from agent_pipelines.framework.scorecard_alerts import (
    DESCRIPTIONS,
    AlertWebhook,
    CheckName,
    ScorecardThresholds,
    evaluate,
)

GROUP = "scorecard"
# The first day a scorecard partition exists for; earlier days have no data in a fresh deployment.
START_DATE = "2026-01-01"
DAILY = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)


def scorecard_key(workflow: str) -> dg.AssetKey:
    return dg.AssetKey([GROUP, workflow])


def build_scorecard_asset(workflow: str) -> dg.AssetsDefinition:
    key = scorecard_key(workflow)

    @dg.asset(key=key, group_name=GROUP, partitions_def=DAILY, kinds={"sql"},
              check_specs=[dg.AssetCheckSpec(str(name), asset=key, description=DESCRIPTIONS[name])
                           for name in CheckName],
              description=f"{workflow}: run success, duplicate writes, retry loops, human review, time to "
                          f"complete, cost, policy blocks, escalations, stranded intents and queue depth per day.")
    def _scorecard(context: dg.AssetExecutionContext, config: ScorecardThresholds, runtime: AgentRuntime,
                   alerts: AlertWebhook) -> dg.MaterializeResult:
        day = date.fromisoformat(context.partition_key)
        before = day - timedelta(days=1)
        with runtime.db.connect() as conn:
            figures = compute(conn, workflow, [before, day], lease_s=runtime.lease_seconds)
        outcomes = evaluate(figures[day], figures[before], config)
        failed = [o for o in outcomes if not o.passed]
        delivery = alerts.deliver(runtime.db, workflow, day, failed)
        for check in failed:
            context.log.warning(f"SCORECARD ALERT {check.name} ({workflow} {day}): {check.summary}; "
                                f"alert {delivery[check.name]}")
        results = [dg.AssetCheckResult(
            check_name=str(o.name), passed=o.passed, severity=o.severity, description=o.summary,
            metadata={**{k: dg.MetadataValue.float(float(v)) for k, v in o.figures.items()},
                      **({"alert": dg.MetadataValue.text(delivery[o.name])} if o.name in delivery else {})})
            for o in outcomes]
        metadata = {k: dg.MetadataValue.int(v) if isinstance(v, int) else dg.MetadataValue.float(float(v))
                    for k, v in figures[day].figures().items()}
        return dg.MaterializeResult(metadata=metadata, check_results=results)

    return _scorecard


def build_scorecard(workflows: list[str]) -> tuple[list[dg.AssetsDefinition], dg.JobDefinition, dg.ScheduleDefinition]:
    """The scorecard assets of `workflows`, the job that materializes them for one day, and its schedule."""
    assets = [build_scorecard_asset(w) for w in workflows]
    job = dg.define_asset_job("scorecard", selection=dg.AssetSelection.assets(*assets),
                              partitions_def=DAILY, executor_def=dg.in_process_executor)

    @dg.schedule(name="scorecard__daily", job=job, cron_schedule="20 0 * * *", execution_timezone="UTC",
                 default_status=dg.DefaultScheduleStatus.RUNNING)
    def daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        """Yesterday's complete day, shortly after midnight (a late write of the day is still counted
        when the partition is materialized again)."""
        yesterday = (context.scheduled_execution_time.date() - timedelta(days=1)).isoformat()
        return dg.RunRequest(run_key=f"scorecard-{yesterday}", partition_key=yesterday)

    return assets, job, daily
