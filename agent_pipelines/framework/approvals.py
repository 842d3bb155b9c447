"""Durable human approvals: the exact change bound to its digest, who may decide it, and expiry.

A request is stored when policy says needs_approval and the run ends. Its digest covers everything
the continuation acts on: the writes and the proposal, the evidence (intake, context, facts and policy
result), the workflow, the intent and the policy pack pinned for it. A decision (approve, deny, or
edit-and-approve) is taken by an authenticated reviewer (reviewers.py) under a row lock on the
request, so two approvers clicking at once are serialized, and it is signed with the server key
(signing.py) over that digest. The continuation re-verifies every signature, every reviewer against
the pinned policy and the digest before it commits (`verify_approved`). Every approval event is
chained in the audit table (audit.py). Every refusal raises DecisionRefused and changes nothing."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, select, update

from agent_pipelines.framework import audit, reviewers
from agent_pipelines.framework.db import Database, aware, utcnow  # noqa: F401 - aware is re-exported
from agent_pipelines.framework.intents import transition
from agent_pipelines.framework.notifications import Outbox
from agent_pipelines.framework.policy import ApprovalPolicy, PolicyPack
from agent_pipelines.framework.redaction import redact
from agent_pipelines.framework.reviewers import Reviewer
from agent_pipelines.framework.signing import ApprovalKey, sha256
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


class ApprovalTampered(Exception):
    """What the database says was approved does not verify: the continuation must not commit it."""


def console_link(base_url: str, approval_id: str) -> str:
    """The reviewer console's page of one request (`agent-pipelines console`; base AGENT_PIPELINES_CONSOLE_URL)."""
    return f"{base_url.rstrip('/')}/requests/{approval_id}"


def change_digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def request_digest(req: dict[str, Any], payload: Any = None) -> str:
    """The digest of a change (default: the request's own) together with everything the continuation
    uses from the request: rewriting any of it (evidence, intake, context, the workflow, the pinned
    policy) changes the digest, and the signed decisions no longer match it."""
    return sha256({"workflow": req["workflow"], "intent_id": req["intent_id"], "policy": req["policy_digest"],
                   "change": req["payload"] if payload is None else payload, "evidence": req["evidence"]})


def _ts(at: datetime) -> str:
    return aware(at).astimezone(UTC).isoformat()


def decision_parts(d: dict[str, Any]) -> tuple[Any, ...]:
    """What a decision's signature covers (the approval id, the digest it decided, the decision, the
    reviewer and the time)."""
    return ("decision", d["decision_id"], d["approval_id"], d["decided_by"], d["reviewer_token_id"], d["decision"],
            d["digest_seen"], d["edited_digest"], d["note"], _ts(d["at"]))


def decision_problem(key: ApprovalKey, policy: ApprovalPolicy, req: dict[str, Any], d: dict[str, Any]) -> str | None:
    """Why a stored decision does not count (None: it verifies and its reviewer may decide)."""
    who = d["decided_by"]
    if d["approval_id"] != req["approval_id"] or not key.verify(d["signature"], *decision_parts(d)):
        return f"decision {d['decision_id']} by {who} has no valid signature (forged or altered in the database)"
    if who.strip().casefold().startswith("agent:") or not policy.may_decide(who):
        return f"decision {d['decision_id']} is by {who}, who may not decide {req['workflow']} approvals"
    if who == req["requested_by"] and not policy.requester_may_approve:
        return f"decision {d['decision_id']} is by {who}, the requester"
    return None


def request_approval(db: Database, key: ApprovalKey, *, intent_id: str, workflow: str, policy_digest: str,
                     payload: dict[str, Any], evidence: dict[str, Any], rationale: str, ttl_hours: float,
                     run_id: str | None, required_approvals: int = 1,
                     requested_by: str = AGENT_IDENTITY, notify: Outbox | None = None) -> dict[str, Any]:
    """Store (once per intent and change) the request a human decides on; returns the stored row. A new
    request's notifications (`notify`: the pack's channels that are configured) are queued with it, in
    the same transaction, for the approvals__notify sensor to deliver."""
    now = utcnow()
    # The digest is over the evidence as stored (redacted, JSON round-tripped): what is re-hashed later.
    row = dict(intent_id=intent_id, workflow=workflow, policy_digest=policy_digest, payload=payload,
               evidence=json.loads(json.dumps(redact(evidence), default=str)))
    digest = request_digest(row)
    approval_id = f"apr-{digest[:20]}"
    with db.begin() as conn:
        if insert_ignore(conn, approval_requests, dict(
                row, approval_id=approval_id, status=ApprovalStatus.PENDING, digest=digest, rationale=rationale,
                requested_by=requested_by, run_id=run_id, created_at=now, expires_at=now + timedelta(hours=ttl_hours),
                required_approvals=required_approvals), ["approval_id"]):
            audit.append(conn, key, audit.EventKind.REQUESTED, approval_id, dict(
                intent_id=intent_id, workflow=workflow, policy_digest=policy_digest, digest=digest,
                required_approvals=required_approvals, requested_by=requested_by))
            if notify is not None:
                notify.enqueue(conn, get(conn, approval_id))
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


def required_approvals(policy: ApprovalPolicy, req: dict[str, Any]) -> int:
    """The stored count, never fewer than the pinned policy asks for the facts in the (digested) evidence."""
    return max(int(req["required_approvals"] or 1), policy.required_approvals((req["evidence"] or {}).get("facts", {})))


def decide(db: Database, pack: PolicyPack, approval_id: str, *, reviewer: Reviewer, key: ApprovalKey,
           kind: DecisionKind, note: str | None = None, edited_payload: dict[str, Any] | None = None,
           now: datetime | None = None) -> dict[str, Any]:
    """Record one authenticated reviewer's signed decision under `pack` (the request's workflow's
    policy). Returns the request after it (status, approvals so far)."""
    now = now or utcnow()
    if kind == DecisionKind.DENY and not (note or "").strip():
        raise DecisionRefused("a denial needs a reason (--reason)")
    with db.begin() as conn:
        conn.execute(for_update(conn, select(approval_requests.c.approval_id)
                                .where(approval_requests.c.approval_id == approval_id)))
        req = get(conn, approval_id)
        if req["workflow"] != pack.workflow:
            raise DecisionRefused(f"{approval_id} is a {req['workflow']} request; the {pack.workflow} policy "
                                  f"cannot decide it")
        if req["policy_digest"] != pack.digest:
            raise DecisionRefused(f"{approval_id} was requested under another {pack.workflow} policy "
                                  f"({str(req['policy_digest'])[:12]}, now {pack.digest[:12]}); it must be asked again")
        if not reviewers.still_active(conn, key, reviewer):
            raise DecisionRefused(f"the token of {reviewer.name} is revoked or unknown")
        taken = decisions(conn, approval_id)
        # Earlier decisions are verified again: a forged row must not count towards the two-person rule.
        problems = [p for d in taken if (p := decision_problem(key, pack.approval, req, d))]
        if not problems:
            return _record(conn, key, pack.approval, req, taken, reviewer, kind, note, edited_payload, now)
    refuse(db, key, req, "; ".join(problems))  # after the rollback: the refusal and escalation persist
    raise DecisionRefused(f"{approval_id} needs attention, not a decision: " + "; ".join(problems))


def _record(conn: Connection, key: ApprovalKey, policy: ApprovalPolicy, req: dict[str, Any],
            taken: list[dict[str, Any]], reviewer: Reviewer, kind: DecisionKind, note: str | None,
            edited_payload: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    actor, approval_id = reviewer.name, req["approval_id"]
    _check_may_decide(policy, req, taken, actor, now)
    payload, digest = current_change(req, taken)
    edited_digest = None
    if kind == DecisionKind.EDIT:
        if edited_payload is None:
            raise DecisionRefused("an edit needs the edited change")
        payload, edited_digest = edited_payload, request_digest(req, edited_payload)
        if edited_digest == digest:
            raise DecisionRefused("the edit changes nothing; approve instead")
    row = dict(decision_id=f"dec-{change_digest([approval_id, actor, kind, now.isoformat()])[:20]}",
               approval_id=approval_id, decided_by=actor, reviewer_token_id=reviewer.token_id, decision=str(kind),
               note=note, digest_seen=digest, edited_payload=edited_payload, edited_digest=edited_digest, at=now)
    row["signature"] = key.sign(*decision_parts(row))
    conn.execute(approval_decisions.insert().values(**row))
    status, approved_digest, approvers = ApprovalStatus.PENDING, None, set()
    if kind == DecisionKind.DENY:
        status = ApprovalStatus.DENIED
        _complete(conn, req, status, row["decision_id"], now)
        transition(conn, req["intent_id"], IntentState.DENIED, reason=f"denied by {actor}: {note}")
    else:
        # approvals that count: distinct approvers of the change now on the table
        approved_digest = edited_digest or digest
        approvers = {d["decided_by"] for d in decisions(conn, approval_id)
                     if d["decision"] != DecisionKind.DENY and (d["edited_digest"] or d["digest_seen"]) == approved_digest}
        if len(approvers) >= required_approvals(policy, req):
            status = ApprovalStatus.APPROVED
            conn.execute(update(approval_requests).where(approval_requests.c.approval_id == approval_id).values(
                approved_payload=payload, approved_digest=approved_digest))
            _complete(conn, req, status, row["decision_id"], now)
    audit.append(conn, key, audit.EventKind.DECIDED, approval_id, dict(
        {k: row[k] for k in ("decision_id", "decided_by", "reviewer_token_id", "decision", "digest_seen",
                             "edited_digest", "signature")},
        status=str(status), approved_digest=approved_digest if status == ApprovalStatus.APPROVED else None))
    out = get(conn, approval_id)
    return out if kind == DecisionKind.DENY else out | {"approvals": sorted(approvers)}


def verify_approved(conn: Connection, key: ApprovalKey, pack: PolicyPack, approval_id: str) -> dict[str, Any]:
    """The approved request, once everything the continuation will act on verifies: every decision's
    signature, every reviewer against the policy pinned for the request, enough distinct approvers,
    and the stored change, evidence and digest exactly as signed. Else ApprovalTampered, with why."""
    req, taken = get(conn, approval_id), decisions(conn, approval_id)
    if req["status"] != ApprovalStatus.APPROVED:
        raise ApprovalTampered(f"{approval_id} is {req['status']}, not approved")
    if req["workflow"] != pack.workflow or req["policy_digest"] != pack.digest:
        raise ApprovalTampered(f"{approval_id} ({req['workflow']}) was not requested under the {pack.workflow} "
                               f"policy now in force ({pack.digest[:12]})")
    for d in taken:
        if (problem := decision_problem(key, pack.approval, req, d)) is not None:
            raise ApprovalTampered(problem)
    if any(d["decision"] == DecisionKind.DENY for d in taken):
        raise ApprovalTampered(f"{approval_id} holds a denial")
    final = next((d for d in taken if d["decision_id"] == req["final_decision_id"]), None)
    if final is None:
        raise ApprovalTampered(f"{approval_id} is approved by no recorded decision")
    signed = final["edited_digest"] or final["digest_seen"]
    actual = request_digest(req, req["approved_payload"])
    if not (actual == req["approved_digest"] == signed):
        raise ApprovalTampered(f"the change stored for {approval_id} is not the one that was approved (digest "
                               f"{actual[:12]} != {signed[:12]}): not committed")
    approvers = {d["decided_by"] for d in taken if (d["edited_digest"] or d["digest_seen"]) == signed}
    if len(approvers) < (needed := required_approvals(pack.approval, req)):
        raise ApprovalTampered(f"{approval_id} has {len(approvers)} verified approval(s) of the change; "
                               f"the policy needs {needed}")
    return req | {"decisions": taken}


def refuse(db: Database, key: ApprovalKey, req: dict[str, Any], reason: str) -> None:
    """A request that failed verification: chained as refused and escalated to a person."""
    with db.begin() as conn:
        audit.append(conn, key, audit.EventKind.REFUSED, req["approval_id"], {"reason": reason[:2000]})
        _escalate(conn, key, "approval_refused", req, f"{req['workflow']} approval {req['approval_id']} was "
                  f"refused at verification: {reason}"[:4000])


def record_committed(db: Database, key: ApprovalKey, approval_id: str, writes: list[str]) -> None:
    with db.begin() as conn:
        audit.append(conn, key, audit.EventKind.CONTINUATION_COMMITTED, approval_id, {"writes": writes})


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
    if request_digest(dict(req), req["approved_payload"]) != req["approved_digest"]:
        return None, "its stored change does not hash to its approved digest"
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


def expire_overdue(db: Database, key: ApprovalKey, now: datetime | None = None) -> list[dict[str, Any]]:
    """Pending requests past their expiry end as expired, with their intent, and are escalated."""
    now = now or utcnow()
    expired = []
    with db.begin() as conn:
        rows = conn.execute(for_update(conn, select(approval_requests).where(
            approval_requests.c.status == ApprovalStatus.PENDING))).mappings().all()
        for req in (dict(r) for r in rows if aware(r["expires_at"]) <= now):
            _complete(conn, req, ApprovalStatus.EXPIRED, "", now)
            audit.append(conn, key, audit.EventKind.EXPIRED, req["approval_id"], {"expires_at": _ts(req["expires_at"])})
            state = conn.execute(select(intents.c.state).where(intents.c.intent_id == req["intent_id"])).scalar_one()
            if state == IntentState.WAITING_FOR_APPROVAL:
                transition(conn, req["intent_id"], IntentState.EXPIRED,
                           reason=f"approval {req['approval_id']} expired unanswered")
            _escalate(conn, key, "approval_expired", req,
                      f"{req['workflow']} approval {req['approval_id']} expired unanswered at "
                      f"{aware(req['expires_at']).isoformat()}; the change was not made")
            expired.append(req)
    return expired


def _escalate(conn: Connection, key: ApprovalKey, kind: str, req: dict[str, Any], message: str) -> None:
    if escalate(conn, kind, req["approval_id"], req["intent_id"], message):
        audit.append(conn, key, audit.EventKind.ESCALATED, req["approval_id"], {"kind": kind, "message": message})


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
