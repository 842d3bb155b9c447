"""The Dagster code location: every job, sensor, schedule, asset and check is listed here."""

import dagster as dg

from agent_pipelines.framework.jobs import WorkflowJobs, build_jobs
from agent_pipelines.settings import Settings
from agent_pipelines.workflows import all_workflows
from agent_pipelines.workflows.invoice_matching.reconcile import reconciliation_job, reconciliation_schedule
from assets.approvals import housekeeping_job, housekeeping_schedule, pending_queue
from assets.crm import CRM_SPECS, crm_check_job, crm_check_schedule, crm_opportunities_table
from assets.scorecard import build_scorecard
from assets.retention import retention_job, retention_schedule
from assets.system_of_record import CHECKS, SPECS, check_job
from resources import build_resources
from sensors.access import build_access_sensor
from sensors.approvals import build_approval_sensors, build_failure_sensor
from sensors.controls import build_release_sensor
from sensors.crm import build_crm_schedule
from sensors.incidents import build_alert_sensor
from sensors.inputs import build_input_sensor
from sensors.invoices import build_invoice_sensor
from sensors.notifications import build_notify_sensor
from sensors.recovery import build_recovery_sensor
from sensors.refunds import build_refund_sensor
from sensors.tickets import build_ticket_sensor

# Each workflow's trigger: a sensor on its inbox or its table, launching its runs (adaptive batching).
TRIGGERS = {"invoice_matching": build_invoice_sensor, "ticket_intake": build_ticket_sensor,
            "access_offboarding": build_access_sensor, "incident_triage": build_alert_sensor,
            "refund": build_refund_sensor}

check_schedule = dg.ScheduleDefinition(name="system_of_record__checks_daily", job=check_job,
                                       cron_schedule="30 6 * * *", default_status=dg.DefaultScheduleStatus.RUNNING)


def shipped_workflows() -> dict[str, WorkflowJobs]:
    """Every shipped workflow with its jobs: the approval, input, kill-switch and recovery sensors serve
    them all."""
    return {wf.name: WorkflowJobs(wf, build_jobs(wf)) for wf in all_workflows()}


def build_definitions(settings: Settings, shipped: dict[str, WorkflowJobs] | None = None) -> dg.Definitions:
    """`shipped` replaces the workflows (tests run a variant with injected faults through the same wiring)."""
    shipped = shipped or shipped_workflows()
    crm = shipped.get("crm_hygiene")
    agent_jobs = [job for w in shipped.values() for job in w.jobs]
    scorecards, scorecard_job, scorecard_schedule = build_scorecard(list(shipped))
    return dg.Definitions(
        jobs=[*agent_jobs, reconciliation_job, check_job, housekeeping_job, scorecard_job, retention_job,
              *([crm_check_job] if crm else [])],
        sensors=[
            *(TRIGGERS[name](w.wf, w.jobs.main, batch=w.jobs.batch) for name, w in shipped.items() if name in TRIGGERS),
            *build_approval_sensors(shipped, housekeeping_job),
            build_input_sensor(shipped),
            build_release_sensor(shipped),
            build_recovery_sensor(shipped),
            build_failure_sensor(agent_jobs),
            build_notify_sensor(),
        ],
        schedules=[reconciliation_schedule, check_schedule, housekeeping_schedule, scorecard_schedule,
                   retention_schedule,
                   *([build_crm_schedule(crm.wf, crm.jobs.main), crm_check_schedule] if crm else [])],
        assets=[*SPECS, pending_queue, *scorecards, *CRM_SPECS],
        asset_checks=[*CHECKS, *([crm_opportunities_table] if crm else [])],
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -w workspace.yaml`; configuration comes from the environment."""
    return build_definitions(Settings.from_env())
