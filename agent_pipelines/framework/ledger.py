"""The write ledger: each (intent, action) writes once, and the ledger row commits with the write."""

import hashlib
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, func, select, update

from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.redaction import redact
from agent_pipelines.framework.sql import insert_ignore
from agent_pipelines.framework.tables import writes


class WriteStatus(StrEnum):
    COMMITTED = "committed"
    # External writes (framework/external.py): the row is committed before the call, so it can be seen
    # pending; a read-back of the external system that decides it leaves it reconciled.
    PENDING = "pending"
    RECONCILED = "reconciled"
    ALREADY_COMMITTED = "already_committed"  # a retry, re-execution or concurrent run found the row
    WOULD_WRITE = "would_write"  # read_only mode: recorded, nothing changed
    SHADOW = "shadow"            # shadow mode: landed in shadow_writes, not in the system of record


# Rows whose write took effect: committed in our transaction or by an answered call, or found by a read-back.
LANDED = (WriteStatus.COMMITTED, WriteStatus.RECONCILED)


class PreconditionFailed(Exception):
    """The record changed since it was read; the write is not applied blindly."""


class WriteOutcome(BaseModel, frozen=True):
    """What a write tool reports: the record it touched and the touched fields before and after."""

    table: str
    key: str
    before: dict[str, Any] | None
    after: dict[str, Any]


class WriteReceipt(BaseModel, frozen=True):
    idempotency_key: str
    action: str
    tool: str
    table: str
    key: str
    status: WriteStatus
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def idempotency_key(workflow: str, intent_id: str, action: str) -> str:
    """From business identity only, never the run id (a re-execution gets a new run id)."""
    return hashlib.sha256(f"{workflow}\x1f{intent_id}\x1f{action}".encode()).hexdigest()


# apply_once's second statement, built once (sql.py says why).
_LANDED = update(writes).where(writes.c.idempotency_key == bindparam("p_key")).values(
    target=bindparam("p_target", type_=writes.c.target.type), status=bindparam("p_status", type_=writes.c.status.type),
    before=bindparam("p_before", type_=writes.c.before.type), after=bindparam("p_after", type_=writes.c.after.type))


def apply_once(
    db: Database,
    *,
    workflow: str,
    intent_id: str,
    action: str,
    tool: str,
    run_id: str | None,
    write: Callable[[Connection], WriteOutcome],
    approval_id: str | None = None,
    fence: Callable[[Connection], None] | None = None,
) -> WriteReceipt:
    """Run `write` at most once per (workflow, intent, action), in one transaction with its ledger row.
    `fence` runs first in that transaction and raises to refuse the write (the run's claim: StepRun.fence).

    The ledger row is inserted first: a concurrent run with the same key blocks on the UNIQUE index
    (PostgreSQL) or the write lock (SQLite) and then finds the row, so it never reaches `write`."""
    return apply_all(db, workflow=workflow, intent_id=intent_id, run_id=run_id, writes=[(action, tool, write)],
                     approval_id=approval_id, fence=fence)[0]


# (action, tool, write) of one planned write.
PlannedWrite = tuple[str, str, Callable[[Connection], WriteOutcome]]


def apply_all(
    db: Database,
    *,
    workflow: str,
    intent_id: str,
    run_id: str | None,
    writes: Sequence[PlannedWrite],
    approval_id: str | None = None,
    fence: Callable[[Connection], None] | None = None,
    before: Callable[[Connection], None] | None = None,
) -> list[WriteReceipt]:
    """apply_once for several writes of one intent, in one transaction: all of them land with their
    ledger rows, or none does (a write that raises rolls back the ones before it). `before` runs after
    the fence, in the same transaction (the decided plan, stored with its writes)."""
    with db.begin() as conn:
        if fence is not None:
            fence(conn)
        if before is not None:
            before(conn)
        return [_apply(conn, workflow, intent_id, action, tool, run_id, write, approval_id)
                for action, tool, write in writes]


def _apply(conn: Connection, workflow: str, intent_id: str, action: str, tool: str, run_id: str | None,
           write: Callable[[Connection], WriteOutcome], approval_id: str | None) -> WriteReceipt:
    key = idempotency_key(workflow, intent_id, action)
    inserted = insert_ignore(conn, writes, dict(
        idempotency_key=key, intent_id=intent_id, workflow=workflow, action=action, tool=tool,
        target="", status="pending", run_id=run_id, approval_id=approval_id, at=utcnow()), ["idempotency_key"])
    if not inserted:
        row = conn.execute(select(writes).where(writes.c.idempotency_key == key)).mappings().one()
        table, _, rkey = row["target"].partition(":")
        return WriteReceipt(idempotency_key=key, action=action, tool=tool, table=table, key=rkey,
                            status=WriteStatus.ALREADY_COMMITTED, before=row["before"], after=row["after"])
    outcome = write(conn)  # raising here rolls back the ledger row too
    conn.execute(_LANDED, dict(p_key=key, p_target=f"{outcome.table}:{outcome.key}",
                               p_status=str(WriteStatus.COMMITTED), p_before=redact(outcome.before),
                               p_after=redact(outcome.after)))
    return WriteReceipt(idempotency_key=key, action=action, tool=tool, table=outcome.table, key=outcome.key,
                        status=WriteStatus.COMMITTED, before=outcome.before, after=outcome.after)


def ledger_rows(conn: Connection, intent_id: str | None = None) -> list[dict[str, Any]]:
    stmt = select(writes).order_by(writes.c.id)
    if intent_id is not None:
        stmt = stmt.where(writes.c.intent_id == intent_id)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def excess(conn: Connection, columns: list[Any], *where: Any) -> int:
    """How many rows exceed one per distinct value of `columns` (0 when they are unique)."""
    grouped = (select(func.count().label("n")).select_from(columns[0].table).where(*where)
               .group_by(*columns).having(func.count() > 1).subquery())
    return int(conn.execute(select(func.coalesce(func.sum(grouped.c.n - 1), 0))).scalar_one())


def duplicate_ledger_writes(conn: Connection) -> int:
    """More than one landed ledger row for the same (intent, action)."""
    return excess(conn, [writes.c.intent_id, writes.c.action], writes.c.status.in_(LANDED))


def has_writes(db: Database, intent_id: str) -> bool:
    with db.connect() as conn:
        return conn.execute(select(writes.c.id).where(writes.c.intent_id == intent_id).limit(1)).first() is not None


def with_writes(conn: Connection, intent_ids: list[str]) -> set[str]:
    """Of these intents, those with ledger rows (has_writes for a batch step's chunk)."""
    found: set[str] = set()
    for start in range(0, len(intent_ids), 500):
        found.update(conn.execute(select(writes.c.intent_id).where(
            writes.c.intent_id.in_(intent_ids[start:start + 500])).distinct()).scalars())
    return found


def landed_writes(db: Database, intent_id: str) -> int:
    """Ledger rows of one intent that landed or may have (a pending external call): what a recovery must
    not decide again, so it resumes at commit, where a pending row is read back before any new call."""
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(writes).where(
            writes.c.intent_id == intent_id, writes.c.status.in_([*LANDED, WriteStatus.PENDING]))).scalar_one())


def count_writes(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(writes).where(writes.c.status.in_(LANDED))).scalar_one()
