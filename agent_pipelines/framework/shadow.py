"""The shadow report: what a workflow in shadow mode would have written, next to what humans did.

Each shadow write holds the record the agent would have touched and its fields after the change.
The report reads that record from the real table now and compares field by field: `match` (the
humans made the same change), `differs` (the record is there with other values), `missing` (no
such record: the humans did not make it, or made it under another key). Fields the trace redacted
cannot be compared and are counted as such, never reported as a mismatch."""

from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, select

from agent_pipelines.framework.db import Database
from agent_pipelines.framework.tables import metadata, shadow_writes

REDACTED = "[REDACTED"


class ShadowComparison(BaseModel, frozen=True):
    workflow: str
    intent_id: str
    action: str
    table: str
    key: str
    status: str  # match | differs | missing | unknown_table
    differences: dict[str, dict[str, Any]] = {}
    not_compared: tuple[str, ...] = ()


def _same(agent: Any, human: Any) -> bool:
    if agent == human:
        return True
    return str(agent) == str(human) or (hasattr(human, "isoformat") and str(agent) == human.isoformat())


def _real_row(conn: Any, table: Table, key: str) -> dict[str, Any] | None:
    pk = list(table.primary_key.columns)
    if len(pk) != 1:
        return None
    col = pk[0]
    try:
        value: Any = col.type.python_type(key)
    except (NotImplementedError, ValueError, TypeError):
        value = key
    row = conn.execute(select(table).where(col == value)).mappings().first()
    return dict(row) if row is not None else None


def report(db: Database, workflow: str | None = None) -> list[ShadowComparison]:
    """Compare every shadow-mode write (of `workflow`, or all) with the real tables as they are now.
    The caller imports the systems of record first (`agent_pipelines.schema`), so their tables are known."""
    stmt = select(shadow_writes).where(shadow_writes.c.mode == "shadow").order_by(shadow_writes.c.id)
    if workflow:
        stmt = stmt.where(shadow_writes.c.workflow == workflow)
    out: list[ShadowComparison] = []
    with db.connect() as conn:
        for w in conn.execute(stmt).mappings():
            base = dict(workflow=w["workflow"], intent_id=w["intent_id"], action=w["action"],
                        table=w["target_table"], key=w["record_key"])
            table = metadata.tables.get(w["target_table"])
            if table is None:
                out.append(ShadowComparison(**base, status="unknown_table"))
                continue
            real = _real_row(conn, table, w["record_key"])
            if real is None:
                out.append(ShadowComparison(**base, status="missing"))
                continue
            after = w["after"] or {}
            skipped = tuple(sorted(k for k, v in after.items() if isinstance(v, str) and v.startswith(REDACTED)))
            diffs = {k: {"agent": v, "human": real.get(k)} for k, v in after.items()
                     if k in real and k not in skipped and not _same(v, real[k])}
            out.append(ShadowComparison(**base, status="differs" if diffs else "match", differences=diffs,
                                        not_compared=skipped))
    return out


def summary(rows: list[ShadowComparison]) -> dict[str, int]:
    counts = {"shadow_writes": len(rows), "match": 0, "differs": 0, "missing": 0, "unknown_table": 0}
    for r in rows:
        counts[r.status] += 1
    return counts
