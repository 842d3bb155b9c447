"""The payments service's refunds as an asset (external: the refund workflow writes it over HTTP) and its
check: the post-write suite VERIFY runs per refund, over every order our ledger refunded, read back
from the payments API (AGENT_PIPELINES_PAYMENTS_URL). No refund in the ledger: nothing to read."""

import dagster as dg
import pandas as pd
from sqlalchemy import select

from agent_pipelines.framework.external import read_json
from agent_pipelines.framework.ledger import LANDED
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.tables import writes
from assets import expectations

PAYMENTS_REFUNDS = dg.AssetKey(["payments", "refunds"])
SPEC = dg.AssetSpec(PAYMENTS_REFUNDS, description="Refunds in the payments service (created by the refund workflow "
                    "through its API, with an idempotency key).", group_name="system_of_record", kinds={"api"})


def order_refunds_frame(orders: list[dict], refunds: list[dict]) -> pd.DataFrame:
    """One row per refund, with its order's captured and refunded totals (the suite's columns)."""
    by_id = {o["id"]: o for o in orders}
    return pd.DataFrame([{"refund_id": r["id"], "order_id": r["order_id"], "reference": r.get("reference", ""),
                          "amount_cents": r["amount_cents"], "status": r["status"],
                          "captured_cents": by_id[r["order_id"]]["captured_cents"],
                          "refunded_cents": by_id[r["order_id"]]["refunded_cents"]} for r in refunds],
                        columns=["refund_id", "order_id", "reference", "amount_cents", "status", "captured_cents",
                                 "refunded_cents"])


def ledger_orders(runtime: AgentRuntime) -> list[str]:
    """The orders our ledger refunded (landed create_refund rows)."""
    with runtime.db.connect() as conn:
        rows = conn.execute(select(writes.c.after).where(writes.c.tool == "create_refund",
                                                         writes.c.status.in_(LANDED))).scalars().all()
    return sorted({(a or {}).get("order_id") for a in rows} - {None})


@dg.asset_check(asset=PAYMENTS_REFUNDS, name="payments_refunds__post_write",
                description="The post-write suite VERIFY runs per refund, over every order the ledger refunded.")
def payments_refunds_post_write(runtime: AgentRuntime) -> dg.AssetCheckResult:
    order_ids = ledger_orders(runtime)
    if not order_ids:
        return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
    orders = [o for o in (read_json("payments", f"/orders/{oid}") for oid in order_ids) if o is not None]
    refunds = [r for o in orders for r in (read_json("payments", f"/orders/{o['id']}/refunds") or {"data": []})["data"]]
    frame = order_refunds_frame(orders, refunds)
    result = expectations.payments_refunds_post_write(frame)
    return dg.AssetCheckResult(passed=result.passed and len(orders) == len(order_ids),
                               severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"rows": len(frame), "orders": len(order_ids), "evaluated": result.evaluated,
                                         "missing_orders": len(order_ids) - len(orders),
                                         "failed": dg.MetadataValue.json(list(result.failed))})
