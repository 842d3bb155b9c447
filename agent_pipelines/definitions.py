"""The Dagster code location: every job, sensor, schedule, asset and check is listed here."""

import dagster as dg

from agent_pipelines.framework.jobs import build_jobs
from agent_pipelines.settings import Settings
from agent_pipelines.workflows.invoice_matching.reconcile import reconciliation_job, reconciliation_schedule
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from agent_pipelines.workflows.ticket_intake.workflow import TicketIntake
from assets.approvals import housekeeping_job, housekeeping_schedule, pending_queue
from assets.system_of_record import CHECKS, SPECS, check_job
from resources import build_resources
from sensors.approvals import build_approval_sensors, build_failure_sensor
from sensors.inputs import build_input_sensor
from sensors.invoices import build_invoice_sensor
from sensors.tickets import build_ticket_sensor

check_schedule = dg.ScheduleDefinition(name="system_of_record__checks_daily", job=check_job,
                                       cron_schedule="30 6 * * *", default_status=dg.DefaultScheduleStatus.RUNNING)


def build_definitions(settings: Settings) -> dg.Definitions:
    invoices, tickets = InvoiceMatching(), TicketIntake()
    invoice_jobs, ticket_jobs = build_jobs(invoices), build_jobs(tickets)
    agent_jobs = [*invoice_jobs, *ticket_jobs]
    return dg.Definitions(
        jobs=[*agent_jobs, reconciliation_job, check_job, housekeeping_job],
        sensors=[
            build_invoice_sensor(invoices, invoice_jobs.main),
            build_ticket_sensor(tickets, ticket_jobs.main),
            *build_approval_sensors({invoices.name: invoice_jobs.after_approval,
                                     tickets.name: ticket_jobs.after_approval}, housekeeping_job),
            build_input_sensor({invoices.name: (invoices, invoice_jobs.main), tickets.name: (tickets, ticket_jobs.main)}),
            build_failure_sensor(agent_jobs),
        ],
        schedules=[reconciliation_schedule, check_schedule, housekeeping_schedule],
        assets=[*SPECS, pending_queue],
        asset_checks=CHECKS,
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev -w workspace.yaml`; configuration comes from the environment."""
    return build_definitions(Settings.from_env())
