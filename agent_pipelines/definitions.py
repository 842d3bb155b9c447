"""The Dagster code location: every job, sensor, schedule, asset and check is listed here."""

import dagster as dg

from agent_pipelines.framework.jobs import build_job
from agent_pipelines.settings import Settings
from agent_pipelines.workflows.invoice_matching.reconcile import reconciliation_job, reconciliation_schedule
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from assets.system_of_record import CHECKS, SPECS, check_job
from resources import build_resources
from sensors.invoices import build_invoice_sensor

check_schedule = dg.ScheduleDefinition(name="system_of_record__checks_daily", job=check_job,
                                       cron_schedule="30 6 * * *", default_status=dg.DefaultScheduleStatus.RUNNING)


def build_definitions(settings: Settings) -> dg.Definitions:
    invoices = InvoiceMatching()
    invoice_job = build_job(invoices)
    return dg.Definitions(
        jobs=[invoice_job, reconciliation_job, check_job],
        sensors=[build_invoice_sensor(invoices, invoice_job)],
        schedules=[reconciliation_schedule, check_schedule],
        assets=SPECS,
        asset_checks=CHECKS,
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -w workspace.yaml`; configuration comes from the environment."""
    return build_definitions(Settings.from_env())
