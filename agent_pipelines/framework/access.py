"""Who read a trace: one `trace_access` row per read of an intent's or a run's trace by a person, through
the CLI (`trace show`, `approvals show`) or the reviewer console (a request page). Forensics asks "who
saw this invoice's data, and when": the rows answer it, and `agent-pipelines trace access` lists them."""

from enum import StrEnum
from typing import Any

from sqlalchemy import select

from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.tables import trace_access


class Via(StrEnum):
    CLI = "cli"
    CONSOLE = "console"


def log_read(db: Database, *, actor: str, via: Via, what: str, intent_id: str | None = None,
             run_id: str | None = None, approval_id: str | None = None) -> None:
    """Record a read before its data is shown (retried like every trace row: a lost row is evidence lost)."""
    row = {"actor": actor[:160], "via": str(via), "what": what[:64], "intent_id": intent_id, "run_id": run_id,
           "approval_id": approval_id, "at": utcnow()}
    db.transaction(lambda conn: conn.execute(trace_access.insert().values(**row)))


def reads(db: Database, *, intent_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The latest reads, newest first (of one intent's trace when given)."""
    stmt = select(trace_access).order_by(trace_access.c.id.desc()).limit(limit)
    if intent_id is not None:
        stmt = stmt.where(trace_access.c.intent_id == intent_id)
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]
