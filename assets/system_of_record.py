"""The system-of-record tables as assets (written by agent runs, read by reconciliation) and their
checks. Commits log AssetMaterializations on these keys; VERIFY logs the post-write suite on them."""

import dagster as dg
import pandas as pd
from sqlalchemy import func, select

from agent_pipelines.framework.runtime import AgentRuntime
from assets import expectations
from resources.system_of_record import scheduled_payments, staged_invoice_lines, staged_invoices

VENDORS = dg.AssetKey(["sor", "vendors"])
PURCHASE_ORDERS = dg.AssetKey(["sor", "purchase_orders"])
STAGED_INVOICES = dg.AssetKey(["sor", "staged_invoices"])
STAGED_INVOICE_LINES = dg.AssetKey(["sor", "staged_invoice_lines"])
SCHEDULED_PAYMENTS = dg.AssetKey(["sor", "scheduled_payments"])

SPECS = [
    dg.AssetSpec(VENDORS, description="Vendor master (read-only for agents).", group_name="system_of_record",
                 kinds={"sql"}),
    dg.AssetSpec(PURCHASE_ORDERS, description="Purchase orders; invoice_matching adds to invoiced_cents.",
                 group_name="system_of_record", kinds={"sql"}, deps=[VENDORS]),
    dg.AssetSpec(STAGED_INVOICES, description="Invoices matched to a PO and staged for payment.",
                 group_name="system_of_record", kinds={"sql"}, deps=[PURCHASE_ORDERS]),
    dg.AssetSpec(STAGED_INVOICE_LINES, description="Line items of staged invoices.",
                 group_name="system_of_record", kinds={"sql"}, deps=[STAGED_INVOICES]),
    dg.AssetSpec(SCHEDULED_PAYMENTS, description="Payments scheduled for staged invoices.",
                 group_name="system_of_record", kinds={"sql"}, deps=[STAGED_INVOICES]),
    # ticket_intake writes tickets and ticket_messages; access_offboarding disables accounts and revokes
    # role grants (never deletes). Their commits materialize these keys.
    dg.AssetSpec(dg.AssetKey(["sor", "tickets"]), description="Support tickets (created by ticket_intake).",
                 group_name="system_of_record", kinds={"sql"}),
    dg.AssetSpec(dg.AssetKey(["sor", "ticket_messages"]), description="Messages filed on tickets.",
                 group_name="system_of_record", kinds={"sql"}, deps=[dg.AssetKey(["sor", "tickets"])]),
    dg.AssetSpec(dg.AssetKey(["sor", "directory_accounts"]),
                 description="Directory accounts; access_offboarding disables leavers' accounts.",
                 group_name="system_of_record", kinds={"sql"}),
    dg.AssetSpec(dg.AssetKey(["sor", "role_grants"]),
                 description="Role grants; access_offboarding sets revoked_at (rows are never deleted).",
                 group_name="system_of_record", kinds={"sql"}, deps=[dg.AssetKey(["sor", "directory_accounts"])]),
]


def staged_invoices_frame(runtime: AgentRuntime) -> pd.DataFrame:
    """All staged invoices with their payment amount and line count: one vectorized read."""
    line_counts = (select(staged_invoice_lines.c.invoice_id, func.count().label("line_count"))
                   .group_by(staged_invoice_lines.c.invoice_id).subquery())
    stmt = (select(staged_invoices.c.invoice_id, staged_invoices.c.intent_id, staged_invoices.c.vendor_id,
                   staged_invoices.c.invoice_number, staged_invoices.c.amount_cents, staged_invoices.c.payable_cents,
                   scheduled_payments.c.amount_cents.label("payment_amount_cents"),
                   func.coalesce(line_counts.c.line_count, 0).label("line_count"))
            .select_from(staged_invoices
                         .outerjoin(scheduled_payments, scheduled_payments.c.invoice_id == staged_invoices.c.invoice_id)
                         .outerjoin(line_counts, line_counts.c.invoice_id == staged_invoices.c.invoice_id)))
    with runtime.db.connect() as conn:
        return pd.read_sql(stmt, conn)


@dg.asset_check(asset=STAGED_INVOICES, name="staged_invoices__post_write",
                description="The post-write suite VERIFY runs per invoice, over the whole table.")
def staged_invoices_post_write(runtime: AgentRuntime) -> dg.AssetCheckResult:
    frame = staged_invoices_frame(runtime)
    if frame.empty:
        return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
    result = expectations.staged_invoices_post_write(frame)
    return dg.AssetCheckResult(passed=result.passed, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"rows": len(frame), "evaluated": result.evaluated,
                                         "failed": dg.MetadataValue.json(list(result.failed))})


CHECKS = [staged_invoices_post_write]
check_job = dg.define_asset_job("system_of_record__checks", selection=dg.AssetSelection.checks(*CHECKS),
                               executor_def=dg.in_process_executor)
