"""The approval audit chain: an append-only table where each event's hash covers the previous one.

`append` runs inside the transaction that makes the change it records, so a decision and its event
land together or not at all. The chain's head row is locked by every append (appends serialize on
both backends) and sealed with the server key, so rewriting, deleting or dropping the newest events
is detected. `verify` walks the chain, then checks that the approval tables say what the chain says:
a decision row, an approved status or a request's evidence changed in SQL has no matching event."""

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select, update

from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.signing import ApprovalKey, canonical
from agent_pipelines.framework.sql import for_update, insert_ignore
from agent_pipelines.framework.tables import approval_decisions, approval_events, approval_requests, audit_head

CHAIN = "approvals"
GENESIS = "0" * 64


class EventKind(StrEnum):
    REQUESTED = "requested"
    DECIDED = "decided"
    EXPIRED = "expired"
    ESCALATED = "escalated"
    CONTINUATION_COMMITTED = "continuation_committed"
    REFUSED = "refused"
    REVIEWER_ADDED = "reviewer_added"
    REVIEWER_REVOKED = "reviewer_revoked"
    NOTIFIED = "notified"            # an approver was told of a request (notify_delivery.py)
    NOTIFY_FAILED = "notify_failed"  # a notification gave up; an escalation follows
    RETENTION_PURGED = "retention_purged"  # trace payloads past retention were purged (retention.py)


def event_hash(prev_hash: str, row: dict[str, Any]) -> str:
    body = {k: row[k] for k in ("seq", "approval_id", "kind", "payload", "at")}
    return hashlib.sha256(prev_hash.encode() + canonical(body)).hexdigest()


def _head_seal(key: ApprovalKey, seq: int, hash_: str) -> str:
    return key.sign("audit_head", CHAIN, seq, hash_)


def append(conn: Connection, key: ApprovalKey, kind: EventKind, approval_id: str | None,
           payload: dict[str, Any]) -> int:
    """Chain one event (in the caller's transaction); returns its seq."""
    insert_ignore(conn, audit_head, dict(chain=CHAIN, seq=0, hash=GENESIS, seal=_head_seal(key, 0, GENESIS)),
                  ["chain"])
    head = conn.execute(for_update(conn, select(audit_head).where(audit_head.c.chain == CHAIN))).mappings().one()
    # JSON round trip first: the hash is over exactly what the database will give back.
    row = dict(seq=head["seq"] + 1, approval_id=approval_id, kind=str(kind),
               payload=json.loads(canonical(payload)), at=utcnow().isoformat())
    row["prev_hash"], row["hash"] = head["hash"], event_hash(head["hash"], row)
    conn.execute(approval_events.insert().values(**row))
    conn.execute(update(audit_head).where(audit_head.c.chain == CHAIN).values(
        seq=row["seq"], hash=row["hash"], seal=_head_seal(key, row["seq"], row["hash"])))
    return row["seq"]


@dataclass(frozen=True)
class AuditReport:
    events: int
    problem: str | None = None
    seq: int | None = None  # where the first break is, when it is at an event

    @property
    def intact(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        if self.intact:
            return f"audit: {self.events} events, chain intact"
        where = f"seq {self.seq}" if self.seq is not None else "the approval tables"
        return f"audit: BROKEN at {where}: {self.problem}"


def verify(db: Database, key: ApprovalKey) -> AuditReport:
    with db.connect() as conn:
        events = [dict(r) for r in conn.execute(select(approval_events).order_by(approval_events.c.seq)).mappings()]
        head = conn.execute(select(audit_head).where(audit_head.c.chain == CHAIN)).mappings().first()
        if (broken := _walk(key, events, head)) is not None:
            return broken
        problem = _tables_problem(conn, key, events)
    if problem is not None:
        return AuditReport(len(events), problem[1], problem[0])
    return AuditReport(len(events))


def _walk(key: ApprovalKey, events: list[dict[str, Any]], head: Any) -> AuditReport | None:
    prev = GENESIS
    for i, e in enumerate(events, start=1):
        if e["seq"] != i:
            return AuditReport(len(events), f"expected seq {i}: an event is missing", e["seq"])
        if e["prev_hash"] != prev:
            return AuditReport(len(events), "prev_hash does not match the previous event's hash", e["seq"])
        if event_hash(prev, e) != e["hash"]:
            return AuditReport(len(events), "hash mismatch: the event was rewritten", e["seq"])
        prev = e["hash"]
    n = len(events)
    if head is None:
        return None if n == 0 else AuditReport(n, "the chain head is missing", n)
    if not key.verify(head["seal"], "audit_head", CHAIN, head["seq"], head["hash"]):
        return AuditReport(n, "the chain head's seal does not verify (rewritten, or another key)", head["seq"])
    if head["seq"] != n or head["hash"] != prev:
        return AuditReport(n, f"the sealed head is at seq {head['seq']}, the table ends at {n}: events were "
                              f"removed or added outside the chain", n)
    return None


def _tables_problem(conn: Connection, key: ApprovalKey, events: list[dict[str, Any]]) -> tuple[int | None, str] | None:
    """The first disagreement between the approval tables and the chain (seq of the event, why)."""
    from agent_pipelines.framework import approvals  # approvals appends through this module

    requested = {e["approval_id"]: e for e in events if e["kind"] == EventKind.REQUESTED}
    decided = {e["payload"].get("decision_id"): e for e in events if e["kind"] == EventKind.DECIDED}
    completing = {e["approval_id"]: e for e in events if e["kind"] == EventKind.DECIDED
                  and e["payload"].get("status") in ("approved", "denied")}
    expired = {e["approval_id"] for e in events if e["kind"] == EventKind.EXPIRED}
    for req in (dict(r) for r in conn.execute(select(approval_requests).order_by(approval_requests.c.created_at))
                .mappings()):
        aid, ev = req["approval_id"], requested.get(req["approval_id"])
        if ev is None:
            return None, f"request {aid} has no requested event"
        p = ev["payload"]
        if any(p.get(k) != req[k] for k in ("intent_id", "workflow", "policy_digest", "digest", "required_approvals")):
            return ev["seq"], f"request {aid} differs from its requested event (intent, workflow, policy, digest or count)"
        if approvals.request_digest(req) != req["digest"]:
            return ev["seq"], f"request {aid}: its change or evidence was rewritten after it was requested"
        if req["status"] in ("approved", "denied"):
            done = completing.get(aid)
            if done is None or done["payload"]["decision_id"] != req["final_decision_id"] \
                    or done["payload"]["status"] != req["status"]:
                return ev["seq"], f"request {aid} is {req['status']} but no chained decision made it so"
            if req["status"] == "approved" and (done["payload"]["approved_digest"] != req["approved_digest"]
                                                or approvals.request_digest(req, req["approved_payload"])
                                                != req["approved_digest"]):
                return done["seq"], f"request {aid}: the approved change is not the one the chained decision approved"
        if req["status"] == "expired" and aid not in expired:
            return ev["seq"], f"request {aid} is expired but no expiry was chained"
    rows = [dict(r) for r in conn.execute(select(approval_decisions).order_by(approval_decisions.c.at)).mappings()]
    for d in rows:
        ev = decided.pop(d["decision_id"], None)
        if ev is None:
            return None, f"decision {d['decision_id']} ({d['decided_by']} on {d['approval_id']}) has no decided event"
        p = ev["payload"]
        if ev["approval_id"] != d["approval_id"] or any(p.get(k) != d[k] for k in (
                "decided_by", "reviewer_token_id", "decision", "digest_seen", "edited_digest", "signature")):
            return ev["seq"], f"decision {d['decision_id']} differs from its decided event"
        if not key.verify(d["signature"], *approvals.decision_parts(d)):
            return ev["seq"], f"decision {d['decision_id']} has no valid signature"
    if decided:
        ev = next(iter(decided.values()))
        return ev["seq"], f"decision {ev['payload'].get('decision_id')} was chained but its row is gone"
    return None
