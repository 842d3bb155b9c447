"""Approval requests: the exact change, bound to its digest, with evidence and an expiry."""

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.redaction import redact
from agent_pipelines.framework.sql import insert_ignore
from agent_pipelines.framework.tables import approval_requests

AGENT_IDENTITY = "agent:agent_pipelines"


def change_digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def request_approval(db: Database, *, intent_id: str, workflow: str, payload: dict[str, Any],
                     evidence: dict[str, Any], rationale: str, ttl_hours: float, run_id: str | None,
                     requested_by: str = AGENT_IDENTITY) -> dict[str, Any]:
    """Store (once per intent and change) the request a human decides on; returns the stored row."""
    digest = change_digest(payload)
    approval_id = f"apr-{digest[:20]}"
    now = utcnow()
    with db.begin() as conn:
        insert_ignore(conn, approval_requests, dict(
            approval_id=approval_id, intent_id=intent_id, workflow=workflow, status="pending", payload=payload,
            digest=digest, evidence=redact(evidence), rationale=rationale, requested_by=requested_by,
            run_id=run_id, created_at=now, expires_at=now + timedelta(hours=ttl_hours)), ["approval_id"])
        return dict(conn.execute(select(approval_requests).where(
            approval_requests.c.approval_id == approval_id)).mappings().one())


def pending_approvals(db: Database) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(select(approval_requests).where(approval_requests.c.status == "pending")
                            .order_by(approval_requests.c.created_at))
        return [dict(r) for r in rows.mappings()]
