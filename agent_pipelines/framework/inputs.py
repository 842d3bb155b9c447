"""Input recovery: an intent that lacks a required input parks in waiting_for_input with one
targeted question and a TTL. An answer (CLI, or a new record or file carrying the same correlation)
is stored on the request; a sensor resumes the intent from its persisted steps."""

import hashlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from agent_pipelines.framework.approvals import DecisionRefused, aware, escalate
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.intents import transition
from agent_pipelines.framework.rowbuffer import RowKind, Sink
from agent_pipelines.framework.sql import for_update, insert_ignore
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.tables import input_requests, intent_steps, intents


class InputRefused(DecisionRefused):
    """The answer was not taken; nothing changed."""


def ask(db: Database, *, intent_id: str, field: str, question: str, ttl_hours: float,
        run_id: str | None) -> dict[str, Any]:
    request_id = "inp-" + hashlib.sha256(f"{intent_id}\x1f{field}\x1f{question}".encode()).hexdigest()[:20]
    now = utcnow()
    with db.begin() as conn:
        insert_ignore(conn, input_requests, dict(
            request_id=request_id, intent_id=intent_id, field=field, question=question, status="pending",
            run_id=run_id, created_at=now, expires_at=now + timedelta(hours=ttl_hours)), ["request_id"])
        return dict(conn.execute(select(input_requests).where(input_requests.c.request_id == request_id))
                    .mappings().one())


def pending_question(conn: Connection, intent_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(input_requests).where(
        input_requests.c.intent_id == intent_id, input_requests.c.status == "pending")
        .order_by(input_requests.c.created_at.desc())).mappings().first()
    return dict(row) if row else None


def open_request(conn: Connection, intent_id: str) -> dict[str, Any] | None:
    row = conn.execute(for_update(conn, select(input_requests).where(
        input_requests.c.intent_id == intent_id, input_requests.c.status == "pending")
        .order_by(input_requests.c.created_at.desc()))).mappings().first()
    return dict(row) if row else None


def provide(db: Database, intent_id: str, answer: dict[str, Any], *, by: str,
            allowed_fields: set[str], now: datetime | None = None) -> dict[str, Any]:
    """Store the answer to the intent's open question. Refusals change nothing."""
    now = now or utcnow()
    with db.begin() as conn:
        state = conn.execute(select(intents.c.state).where(intents.c.intent_id == intent_id)).scalar_one_or_none()
        if state is None:
            raise InputRefused(f"no intent {intent_id!r}")
        if state != IntentState.WAITING_FOR_INPUT:
            raise InputRefused(f"intent {intent_id} is {state}, not waiting_for_input")
        req = open_request(conn, intent_id)
        if req is None:
            raise InputRefused(f"intent {intent_id} has no open question")
        if aware(req["expires_at"]) <= now:
            raise InputRefused(f"the question for {intent_id} expired at {aware(req['expires_at']).isoformat()}")
        if req["field"] not in answer:
            raise InputRefused(f"the question is about {req['field']!r}: {req['question']}")
        unknown = sorted(set(answer) - allowed_fields)
        if unknown:
            raise InputRefused(f"unknown field(s) {unknown}")
        conn.execute(update(input_requests).where(input_requests.c.request_id == req["request_id"]).values(
            status="answered", answer=answer, answered_by=by, answered_at=now))
        return {**req, "status": "answered", "answer": answer, "answered_by": by}


def answered_waiting(db: Database) -> list[dict[str, Any]]:
    """Answered questions whose intent still waits: each needs one resume run."""
    with db.connect() as conn:
        rows = conn.execute(select(input_requests, intents.c.workflow).join(
            intents, intents.c.intent_id == input_requests.c.intent_id).where(
            input_requests.c.status == "answered", intents.c.state == IntentState.WAITING_FOR_INPUT)).mappings()
        return [dict(r) for r in rows]


def take_answer(conn: Connection, intent_id: str) -> dict[str, Any] | None:
    """The latest answered request of a waiting intent, marked applied (resume reads it once)."""
    row = conn.execute(for_update(conn, select(input_requests).where(
        input_requests.c.intent_id == intent_id, input_requests.c.status == "answered")
        .order_by(input_requests.c.answered_at.desc()))).mappings().first()
    if row is None:
        return None
    conn.execute(update(input_requests).where(input_requests.c.request_id == row["request_id"])
                 .values(status="applied"))
    return dict(row)


def overdue(db: Database, now: datetime) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute(select(input_requests.c.request_id, input_requests.c.expires_at)
                            .where(input_requests.c.status == "pending"))
        return [r.request_id for r in rows if aware(r.expires_at) <= now]


def expire_overdue(db: Database, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or utcnow()
    expired = []
    with db.begin() as conn:
        rows = conn.execute(for_update(conn, select(input_requests).where(
            input_requests.c.status == "pending"))).mappings().all()
        for req in (dict(r) for r in rows if aware(r["expires_at"]) <= now):
            conn.execute(update(input_requests).where(input_requests.c.request_id == req["request_id"])
                         .values(status="expired"))
            state = conn.execute(select(intents.c.state).where(intents.c.intent_id == req["intent_id"])).scalar_one()
            if state == IntentState.WAITING_FOR_INPUT:
                transition(conn, req["intent_id"], IntentState.EXPIRED,
                           reason=f"no answer to {req['field']!r} before {aware(req['expires_at']).isoformat()}")
            escalate(conn, "input_expired", req["request_id"], req["intent_id"],
                     f"intent {req['intent_id']} waited for {req['field']!r} until it expired: {req['question']}")
            expired.append(req)
    return expired


STEP_ROW = RowKind(intent_steps, "upsert", ("intent_id", "step"))


def save_step(sink: Sink, intent_id: str, step: str, output: Any, run_id: str | None) -> None:
    """Persist a step's output (now, or with a batch step's rows: see framework/rowbuffer.py)."""
    sink.put(*step_row(intent_id, step, output, run_id))


def step_row(intent_id: str, step: str, output: Any, run_id: str | None) -> tuple[RowKind, dict[str, Any]]:
    """The row that persists a step's output (rowbuffer.write_rows writes it)."""
    return STEP_ROW, dict(intent_id=intent_id, step=step, output=output, run_id=run_id, at=utcnow())


def saved_step(db: Database, intent_id: str, step: str) -> dict[str, Any] | None:
    with db.connect() as conn:
        row = conn.execute(select(intent_steps).where(intent_steps.c.intent_id == intent_id,
                                                      intent_steps.c.step == step)).mappings().first()
        return dict(row) if row else None
