"""What the console's pages show, computed from the stored requests: plain strings for the templates.

Everything taken from evidence, the change, notes and the rationale goes through the redaction of the
request's workflow (the pack's `data_handling.redact_fields` and the detectors), as `approvals show`
does; the templates then escape it (Jinja2 autoescape), so a memo holding markup renders as text."""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, select

from agent_pipelines.framework import approvals
from agent_pipelines.framework.approvals import ApprovalStatus, aware
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.redaction import redact, redact_text
from agent_pipelines.framework.tables import approval_requests, escalations
from agent_pipelines.framework.workflow import Workflow, WriteAction
from agent_pipelines.settings import Settings

SOURCE_EXCERPT_CHARS = 4000


def show(value: Any) -> str:
    """One value as a reviewer reads it: text as is, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def duration(seconds: float) -> str:
    s = abs(int(seconds))
    text = f"{s // 86400}d {s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h {s % 3600 // 60}m"
    return text if seconds >= 0 else f"{text} ago"


def when(at: datetime | None) -> str:
    return aware(at).strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


def queue(db: Database, now: datetime | None = None) -> list[dict[str, Any]]:
    """Pending requests, oldest first, with their age and deadline."""
    now = now or utcnow()
    return [{"approval_id": r["approval_id"], "workflow": r["workflow"],
             "source": redact_text(Path(str(r["evidence"].get("source", ""))).name),
             "rule": r["evidence"].get("policy", {}).get("rule", ""), "needs": r["required_approvals"],
             "age": duration((now - aware(r["created_at"])).total_seconds()),
             "deadline": when(r["expires_at"]), "expires_in": duration((aware(r["expires_at"]) - now).total_seconds())}
            for r in approvals.pending(db)]


def closed(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """Recently decided, expired and escalated requests, with who and when."""
    with db.connect() as conn:
        rows = [dict(r) for r in conn.execute(
            select(approval_requests).where(approval_requests.c.status != ApprovalStatus.PENDING)
            .order_by(approval_requests.c.created_at.desc()).limit(limit)).mappings()]
        out = []
        for r in rows:
            taken = approvals.decisions(conn, r["approval_id"])
            who = ", ".join(f"{d['decision']} by {d['decided_by']} at {when(d['at'])}" for d in taken)
            esc = _escalations(conn, r["approval_id"])
            out.append({"approval_id": r["approval_id"], "workflow": r["workflow"], "status": r["status"],
                        "who": who or ("expired unanswered at " + when(r["expires_at"])
                                       if r["status"] == ApprovalStatus.EXPIRED else ""),
                        "when": when(r["decided_at"]) or when(r["expires_at"]),
                        "escalated": "; ".join(f"{e['kind']} at {e['at']}" for e in esc)})
    return out


def _escalations(conn: Connection, approval_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(escalations.c.kind, escalations.c.message, escalations.c.at)
                        .where(escalations.c.subject == approval_id).order_by(escalations.c.at)).mappings()
    return [{"kind": e["kind"], "message": redact_text(e["message"]), "at": when(e["at"])} for e in rows]


def _rows(before: dict[str, Any] | None, after: dict[str, Any]) -> list[dict[str, Any]]:
    fields = list(after) + [k for k in (before or {}) if k not in after]
    return [{"field": f, "before": "(new record)" if before is None else show(before.get(f, "(absent)")),
             "after": show(after.get(f, "(unchanged)")),
             "changed": before is None or f not in before or before.get(f) != after.get(f, before.get(f))}
            for f in fields]


def detail(db: Database, wf: Workflow, settings: Settings, approval_id: str) -> dict[str, Any]:
    """Everything the request page shows: what the agent saw, the exact change per record, the rules
    that fired with the values they saw, the rationale, the run, and the decisions so far."""
    fields = wf.policy.data_handling.redact_fields
    with db.connect() as conn:
        req = approvals.get(conn, approval_id)
        taken = approvals.decisions(conn, approval_id)
        esc = _escalations(conn, approval_id)
    evidence = redact(json.loads(json.dumps(req["evidence"], default=str)), fields=fields)
    change, digest = approvals.current_change(req, taken)
    try:
        context = wf.context_model.model_validate(req["evidence"]["context"])
    except ValidationError:  # stored redacted: a masked value may no longer fit its type
        context = None
    previews = []
    for w in change["writes"]:
        action = WriteAction.model_validate(w)
        # Without the context only the planned values can be shown (the base hook, labelled so).
        p = wf.preview_write(context, action) if context is not None else Workflow.preview_write(wf, context, action)
        rows = _rows(redact(p.before, fields=fields), redact(p.after, fields=fields))
        previews.append({"action": w["action"], "tool": w["tool"], "table": p.table, "key": show(p.key),
                         "basis": p.basis, "rows": rows})
    policy = evidence.get("policy", {})
    observed = policy.get("observed", {})
    by_name = {r.name: r for r in wf.policy.rules}
    rules = []
    for reason in policy.get("reasons", []):
        name, _, why = reason.partition(": ")
        rule = by_name.get(name)
        rules.append({"name": name, "why": why,
                      "test": f"{rule.fact} {rule.op} {show(rule.value)}" if rule else "",
                      "saw": (f"{rule.fact} = {show(observed.get(rule.fact))}" if rule else
                              "; ".join(f"{k} = {show(v)}" for k, v in observed.items()
                                        if k in ("planned_tools", "provenance")))})
    original = req["payload"]["proposal"]
    current = change["proposal"]
    proposal = [{"field": f, "original": show(redact(original.get(f), fields=fields)),
                 "current": show(redact(current.get(f), fields=fields)), "edited": original.get(f) != current.get(f),
                 "form_value": show(current.get(f)) if current.get(f) is not None else "",
                 "help": info.description or ""}
                for f, info in wf.proposal_model.model_fields.items()]
    return {
        "approval_id": approval_id, "workflow": req["workflow"], "status": req["status"], "intent_id": req["intent_id"],
        "digest": digest, "requested_digest": req["digest"], "requested_by": req["requested_by"],
        "created": when(req["created_at"]), "deadline": when(req["expires_at"]),
        "expires_in": duration((aware(req["expires_at"]) - utcnow()).total_seconds()),
        "required": approvals.required_approvals(wf.policy.approval, req),
        "rationale": redact_text(req["rationale"] or ""),
        "run_url": f"{settings.dagster_url}/runs/{req['run_id']}" if req["run_id"] else None,
        "source": show(evidence.get("source", "")), "source_excerpt": source_excerpt(settings, req, fields),
        "intake": [(k, show(v)) for k, v in (evidence.get("intake") or {}).items()],
        "context": [(k, show(v)) for k, v in (evidence.get("context") or {}).items()],
        "facts": [(k, show(v)) for k, v in (evidence.get("facts") or {}).items()],
        "decision": policy.get("decision", ""), "rules": rules, "previews": previews, "proposal": proposal,
        "decisions": [{"who": d["decided_by"], "decision": d["decision"], "at": when(d["at"]),
                       "note": redact_text(d["note"] or ""), "digest": d["edited_digest"] or d["digest_seen"]}
                      for d in taken],
        "escalations": esc,
    }


def source_excerpt(settings: Settings, req: dict[str, Any], fields: tuple[str, ...] = ()) -> str | None:
    """The start of the source file, redacted, when it is still in the state folder or the inbox. Only
    there: the path comes from the database, and the console must not become a reader of arbitrary files."""
    raw = str(req["evidence"].get("source") or "")
    if not raw:
        return None
    roots = [settings.state_dir.resolve(), settings.invoice_inbox.resolve()]
    try:
        path = (Path(raw) if Path(raw).is_absolute() else roots[0] / raw).resolve()
        if not any(path.is_relative_to(r) for r in roots) or not path.is_file():
            return None
        with path.open("rb") as f:
            head = f.read(SOURCE_EXCERPT_CHARS).decode("utf-8", errors="replace")
    except OSError:
        return None
    try:  # a whole JSON document: the pack's field names are masked too, not only what the detectors see
        return json.dumps(redact(json.loads(head), fields=fields), indent=1, ensure_ascii=False)
    except ValueError:
        return redact_text(head)
