"""Durable human approvals: the exact change bound to its digest, who may decide it, and expiry.

A request is stored when policy says needs_approval and the run ends. A decision (approve, deny, or
edit-and-approve) is taken under a row lock on the request, so two approvers clicking at once are
serialized: the request completes once, and its completing decision id becomes the run_key of the
single continuation run. Every refusal raises DecisionRefused and changes nothing."""

import hashlib
import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select, update

from agent_pipelines.framework.db import Database, aware, utcnow  # noqa: F401 - aware is re-exported
from agent_pipelines.framework.intents import transition
from agent_pipelines.framework.policy import ApprovalPolicy
from agent_pipelines.framework.redaction import redact
from agent_pipelines.framework.sql import for_update, insert_ignore
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.tables import approval_decisions, approval_requests, escalations, intents

AGENT_IDENTITY = "agent:agent_pipelines"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"


class DecisionKind(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    EDIT = "edit"


class DecisionRefused(Exception):
    """The decision was not taken; nothing changed. The message says why."""


def change_digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def request_approval(db: Database, *, intent_id: str, workflow: str, payload: dict[str, Any],
                     evidence: dict[str, Any], rationale: str, ttl_hours: float, run_id: str | None,
                     required_approvals: int = 1, requested_by: str = AGENT_IDENTITY) -> dict[str, Any]:
    """Store (once per intent and change) the request a human decides on; returns the stored row."""
    digest = change_digest(payload)
    approval_id = f"apr-{digest[:20]}"
    now = utcnow()
    with db.begin() as conn:
        insert_ignore(conn, approval_requests, dict(
            approval_id=approval_id, intent_id=intent_id, workflow=workflow, status=ApprovalStatus.PENDING,
            payload=payload, digest=digest, evidence=redact(evidence), rationale=rationale,
            requested_by=requested_by, run_id=run_id, created_at=now, expires_at=now + timedelta(hours=ttl_hours),
            required_approvals=required_approvals), ["approval_id"])
        return get(conn, approval_id)


def get(conn: Connection, approval_id: str) -> dict[str, Any]:
    row = conn.execute(select(approval_requests).where(approval_requests.c.approval_id == approval_id)).mappings().first()
    if row is None:
        raise DecisionRefused(f"no approval request {approval_id!r}")
    return dict(row)


def decisions(conn: Connection, approval_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(approval_decisions).where(approval_decisions.c.approval_id == approval_id)
                        .order_by(approval_decisions.c.at)).mappings()
    return [dict(r) for r in rows]


def current_change(request: dict[str, Any], taken: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The change on the table: the latest edit, else the proposal as requested."""
    edits = [d for d in taken if d["decision"] == DecisionKind.EDIT]
    if edits:
        return edits[-1]["edited_payload"], edits[-1]["edited_digest"]
    return request["payload"], request["digest"]


def decide(db: Database, policy: ApprovalPolicy, approval_id: str, *, actor: str, kind: DecisionKind,
           note: str | None = None, edited_payload: dict[str, Any] | None = None,
           now: datetime | None = None) -> dict[str, Any]:
    """Record one approver's decision. Returns the request after it (status, approvals so far)."""
    now = now or utcnow()
    actor = actor.strip()
    with db.begin() as conn:
        conn.execute(for_update(conn, select(approval_requests.c.approval_id)
                                .where(approval_requests.c.approval_id == approval_id)))
        req = get(conn, approval_id)
        taken = decisions(conn, approval_id)
        _check_may_decide(policy, req, taken, actor, now)
        if kind == DecisionKind.DENY and not (note or "").strip():
            raise DecisionRefused("a denial needs a reason (--reason)")
        payload, digest = current_change(req, taken)
        edited_digest = None
        if kind == DecisionKind.EDIT:
            if edited_payload is None:
                raise DecisionRefused("an edit needs the edited change")
            payload, edited_digest = edited_payload, change_digest(edited_payload)
            if edited_digest == digest:
                raise DecisionRefused("the edit changes nothing; approve instead")
        decision_id = f"dec-{change_digest([approval_id, actor, kind, now.isoformat()])[:20]}"
        conn.execute(approval_decisions.insert().values(
            decision_id=decision_id, approval_id=approval_id, decided_by=actor, decision=kind, note=note,
            digest_seen=digest, edited_payload=edited_payload, edited_digest=edited_digest, at=now))
        if kind == DecisionKind.DENY:
            _complete(conn, req, ApprovalStatus.DENIED, decision_id, now)
            transition(conn, req["intent_id"], IntentState.DENIED, reason=f"denied by {actor}: {note}")
            return get(conn, approval_id)
        # approvals that count: distinct approvers of the change now on the table
        current_digest = edited_digest or digest
        approvers = {d["decided_by"] for d in decisions(conn, approval_id)
                     if d["decision"] != DecisionKind.DENY and (d["edited_digest"] or d["digest_seen"]) == current_digest}
        if len(approvers) >= req["required_approvals"]:
            conn.execute(update(approval_requests).where(approval_requests.c.approval_id == approval_id).values(
                approved_payload=payload, approved_digest=current_digest))
            _complete(conn, req, ApprovalStatus.APPROVED, decision_id, now)
        return get(conn, approval_id) | {"approvals": sorted(approvers)}


def approved_write(conn: Connection, approval_id: str, *, intent_id: str, action: str,
                   tool: str) -> tuple[dict[str, Any] | None, str | None]:
    """The parameters an approval approved for (intent, action, tool), or why it approves nothing of
    the kind: the gateway runs a reserved write only when these match what is about to run."""
    req = conn.execute(select(approval_requests).where(approval_requests.c.approval_id == approval_id)
                       ).mappings().first()
    if req is None:
        return None, "no such approval request"
    if req["intent_id"] != intent_id:
        return None, "it was given for another intent"
    if req["status"] != ApprovalStatus.APPROVED:
        return None, f"it is {req['status']}, not approved"
    for w in (req["approved_payload"] or {}).get("writes", []):
        if w.get("action") == action and w.get("tool") == tool:
            return w.get("params") or {}, None
    return None, f"it does not list the write {action!r} with {tool!r}"


def _check_may_decide(policy: ApprovalPolicy, req: dict[str, Any], taken: list[dict[str, Any]], actor: str,
                      now: datetime) -> None:
    if req["status"] != ApprovalStatus.PENDING:
        raise DecisionRefused(f"{req['approval_id']} is already {req['status']}")
    if aware(req["expires_at"]) <= now:
        raise DecisionRefused(f"{req['approval_id']} expired at {aware(req['expires_at']).isoformat()}")
    if not actor or actor.strip().lower().startswith("agent:") or actor == AGENT_IDENTITY:
        raise DecisionRefused(f"{actor or 'an empty identity'} is an agent identity; agents never decide approvals")
    if not policy.may_decide(actor):
        roles = policy.roles_of(actor)
        raise DecisionRefused(f"{actor} may not decide {req['workflow']} approvals (roles: {list(roles) or 'none'}; "
                              f"needs one of {list(policy.allowed_roles)})")
    if actor == req["requested_by"] and not policy.requester_may_approve:
        raise DecisionRefused(f"{actor} requested {req['approval_id']}; policy needs a second person")
    if any(d["decided_by"] == actor for d in taken):
        raise DecisionRefused(f"{actor} already decided {req['approval_id']}; a second approval must come "
                              f"from someone else")


def _complete(conn: Connection, req: dict[str, Any], status: ApprovalStatus, decision_id: str,
              now: datetime) -> None:
    conn.execute(update(approval_requests).where(approval_requests.c.approval_id == req["approval_id"]).values(
        status=status, final_decision_id=decision_id, decided_at=now))


def expire_overdue(db: Database, now: datetime | None = None) -> list[dict[str, Any]]:
    """Pending requests past their expiry end as expired, with their intent, and are escalated."""
    now = now or utcnow()
    expired = []
    with db.begin() as conn:
        rows = conn.execute(for_update(conn, select(approval_requests).where(
            approval_requests.c.status == ApprovalStatus.PENDING))).mappings().all()
        for req in (dict(r) for r in rows if aware(r["expires_at"]) <= now):
            _complete(conn, req, ApprovalStatus.EXPIRED, "", now)
            state = conn.execute(select(intents.c.state).where(intents.c.intent_id == req["intent_id"])).scalar_one()
            if state == IntentState.WAITING_FOR_APPROVAL:
                transition(conn, req["intent_id"], IntentState.EXPIRED,
                           reason=f"approval {req['approval_id']} expired unanswered")
            escalate(conn, "approval_expired", req["approval_id"], req["intent_id"],
                     f"{req['workflow']} approval {req['approval_id']} expired unanswered at "
                     f"{aware(req['expires_at']).isoformat()}; the change was not made")
            expired.append(req)
    return expired


def escalate(conn: Connection, kind: str, subject: str, intent_id: str | None, message: str) -> bool:
    """Record an escalation once per (kind, subject)."""
    return insert_ignore(conn, escalations, dict(kind=kind, subject=subject, intent_id=intent_id, message=message,
                                                 at=utcnow()), ["kind", "subject"])


def pending(db: Database) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(select(approval_requests).where(approval_requests.c.status == ApprovalStatus.PENDING)
                            .order_by(approval_requests.c.created_at)).mappings()
        return [dict(r) for r in rows]


def ready_to_continue(db: Database) -> list[dict[str, Any]]:
    """Approved requests whose intent still waits: each needs its one continuation run."""
    with db.connect() as conn:
        rows = conn.execute(select(approval_requests).join(
            intents, intents.c.intent_id == approval_requests.c.intent_id).where(
            approval_requests.c.status == ApprovalStatus.APPROVED,
            intents.c.state == IntentState.WAITING_FOR_APPROVAL).order_by(approval_requests.c.decided_at)).mappings()
        return [dict(r) for r in rows]
