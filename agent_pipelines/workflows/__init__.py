"""The shipped workflows, one package each."""

from agent_pipelines.framework.workflow import Workflow


def all_workflows() -> list[Workflow]:
    from agent_pipelines.workflows.access_offboarding.workflow import AccessOffboarding
    from agent_pipelines.workflows.incident_triage.workflow import IncidentTriage
    from agent_pipelines.workflows.crm_hygiene.workflow import CrmHygiene
    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
    from agent_pipelines.workflows.refund.workflow import Refund
    from agent_pipelines.workflows.ticket_intake.workflow import TicketIntake

    return [InvoiceMatching(), TicketIntake(), AccessOffboarding(), IncidentTriage(), Refund(), CrmHygiene()]
