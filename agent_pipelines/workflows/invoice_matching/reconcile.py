"""Daily reconciliation of staged invoices, scheduled payments and purchase orders (vectorized).

Whatever does not agree becomes an intent of workflow `invoice_reconciliation` in needs_attention,
identified by what was found, so the same disagreement is raised once, not every day."""

import json

import dagster as dg
import pandas as pd
from sqlalchemy import select

from agent_pipelines.framework.intents import IntentStore, digest
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState
from resources.system_of_record import purchase_orders, scheduled_payments, staged_invoices

WORKFLOW = "invoice_reconciliation"


def find_disagreements(invoices: pd.DataFrame, payments: pd.DataFrame, pos: pd.DataFrame) -> list[dict]:
    inv = invoices.merge(payments[["invoice_id", "payment_id", "amount_cents"]].rename(
        columns={"amount_cents": "paid_cents"}), on="invoice_id", how="left")
    findings = [{"kind": "invoice_without_payment", "subject": r.invoice_id, "amount_cents": int(r.amount_cents)}
                for r in inv[inv["payment_id"].isna()].itertuples()]
    bad = inv[inv["payment_id"].notna() & (inv["paid_cents"] != inv["payable_cents"])]
    findings += [{"kind": "payment_amount_mismatch", "subject": r.invoice_id, "payable_cents": int(r.payable_cents),
                  "payment_cents": int(r.paid_cents)} for r in bad.itertuples()]
    orphan = payments[~payments["invoice_id"].isin(invoices["invoice_id"])]
    findings += [{"kind": "payment_without_invoice", "subject": r.payment_id, "amount_cents": int(r.amount_cents)}
                 for r in orphan.itertuples()]
    billed = invoices.groupby("po_number")["payable_cents"].sum().rename("staged_cents")
    po = pos.set_index("po_number").join(billed).fillna({"staged_cents": 0})
    drift = po[po["invoiced_cents"] != po["staged_cents"]]
    findings += [{"kind": "po_invoiced_mismatch", "subject": str(k), "po_invoiced_cents": int(r.invoiced_cents),
                  "staged_cents": int(r.staged_cents)} for k, r in drift.iterrows()]
    over = po[po["invoiced_cents"] > po["total_cents"]]
    findings += [{"kind": "po_overbilled", "subject": str(k), "total_cents": int(r.total_cents),
                  "invoiced_cents": int(r.invoiced_cents)} for k, r in over.iterrows()]
    return findings


@dg.op(description="RECONCILE: compare staged invoices, payments and POs; raise an intent per disagreement.")
def reconcile_invoices(context: dg.OpExecutionContext, runtime: AgentRuntime) -> dg.Output[int]:
    with runtime.db.connect() as conn:
        invoices = pd.read_sql(select(staged_invoices), conn)
        payments = pd.read_sql(select(scheduled_payments), conn)
        pos = pd.read_sql(select(purchase_orders), conn)
    findings = find_disagreements(invoices, payments, pos)
    store, raised = IntentStore(runtime.db), 0
    for f in findings:
        key = digest(json.dumps(f, sort_keys=True))
        _, created = store.register(
            intent_id=f"{WORKFLOW}:{key[:24]}", workflow=WORKFLOW, correlation_id=f"{f['kind']}:{f['subject']}",
            source_ref=f"reconciliation:{context.run_id}", source_digest=key, intake=f,
            state=IntentState.NEEDS_ATTENTION, reason=f"{f['kind']} on {f['subject']}")
        raised += created
    context.log.info(f"{len(invoices)} invoices, {len(payments)} payments, {len(pos)} POs: "
                     f"{len(findings)} disagreement(s), {raised} new intent(s)")
    return dg.Output(len(findings), metadata={
        "invoices": len(invoices), "payments": len(payments), "purchase_orders": len(pos),
        "disagreements": len(findings), "new_intents": raised,
        "findings": dg.MetadataValue.json(findings[:200])})


@dg.job(name=WORKFLOW, executor_def=dg.in_process_executor,
        tags={"agent_pipelines/workflow": WORKFLOW})
def reconciliation_job() -> None:
    reconcile_invoices()


reconciliation_schedule = dg.ScheduleDefinition(
    name=f"{WORKFLOW}__daily", job=reconciliation_job, cron_schedule="0 6 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING)
