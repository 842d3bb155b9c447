"""Retention of the trace: past `retention_days`, what tools, the model and the policy saw and said is
purged, and the purge is chained in the audit log with its counts.

Purged (set to NULL, so the rows keep serving metrics: tool, status, latency, model, tokens, cost):
- tool_calls: every payload column (params, result, error);
- llm_calls: every payload column (the output, the prompt or raw response when recorded, the error);
- policy_decisions: the observed values;
- intents: the intake of a settled intent (completed, denied, rejected_input, expired), and its persisted
  step outputs (intent_steps, deleted: the context and proposal it read and made);
- parked_intents: the carried change of a released park.
Kept: the write ledger (writes: what changed, when, by which run and approval), the intents with their
states and transitions, and the approval tables with the audit chain, whose digests cover the approval
evidence: purging that would break `audit verify`.

A payload column is a JSON or Text column other than the row's identity: columns a later migration adds
to these tables (a recorded prompt) are purged without a change here."""

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Table,
    Text,
    and_,
    cast,
    delete,
    null,
    or_,
    select,
    update,
)

from agent_pipelines.framework import audit
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.signing import ApprovalKey
from agent_pipelines.framework.states import TERMINAL
from agent_pipelines.framework.tables import (
    intent_steps,
    intents,
    llm_calls,
    parked_intents,
    policy_decisions,
    tool_calls,
)

DEFAULT_RETENTION_DAYS = 90.0
TRACE_TABLES: tuple[Table, ...] = (tool_calls, llm_calls, policy_decisions)
_IDENTITY = {"run_id", "intent_id", "workflow"}


class PurgeReport(BaseModel):
    retention_days: float
    cutoff: datetime
    purged: dict[str, int]  # "<table>" or "<table>.<column>" -> rows purged
    audit_seq: int  # the audit event that records this purge


def payload_columns(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if isinstance(c.type, (JSON, Text)) and c.name not in _IDENTITY]


def _holds(col: Column[Any]) -> Any:
    """The column holds something: neither SQL NULL nor a JSON null (what a None was stored as)."""
    return and_(col.isnot(None), cast(col, Text) != "null")


def purge(db: Database, key: ApprovalKey, retention_days: float, now: datetime | None = None) -> PurgeReport:
    """Purge what is older than `retention_days`, and chain one audit event with the counts, in one
    transaction: a purge is never without its record."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    settled = [str(s) for s in TERMINAL]

    def run(conn: Connection) -> PurgeReport:
        purged: dict[str, int] = {}
        for table in TRACE_TABLES:
            cols = payload_columns(table)
            res = conn.execute(update(table).where(table.c.at < cutoff, or_(*(_holds(c) for c in cols)))
                               .values({c.name: null() for c in cols}))
            purged[table.name] = res.rowcount
        res = conn.execute(update(intents).where(intents.c.state.in_(settled), intents.c.updated_at < cutoff,
                                                 _holds(intents.c.intake)).values(intake=null()))
        purged["intents.intake"] = res.rowcount
        old_settled = select(intents.c.intent_id).where(intents.c.state.in_(settled), intents.c.updated_at < cutoff)
        res = conn.execute(delete(intent_steps).where(intent_steps.c.at < cutoff,
                                                      intent_steps.c.intent_id.in_(old_settled)))
        purged["intent_steps"] = res.rowcount
        res = conn.execute(update(parked_intents).where(parked_intents.c.released_at < cutoff,
                                                        _holds(parked_intents.c.carry)).values(carry=null()))
        purged["parked_intents.carry"] = res.rowcount
        seq = audit.append(conn, key, audit.EventKind.RETENTION_PURGED, None, {
            "retention_days": retention_days, "cutoff": cutoff.isoformat(), "purged": purged})
        return PurgeReport(retention_days=retention_days, cutoff=cutoff, purged=purged, audit_seq=seq)

    return db.transaction(run)
