"""Intents: one unit of work derived from a source, its state, and its history."""

import hashlib
from datetime import datetime
from functools import lru_cache
from collections.abc import Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, case, func, or_, select, update

from agent_pipelines.framework.claims import ACTIVE, ClaimHeld, live_owner
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.redaction import redact_text
from agent_pipelines.framework.sql import for_update, insert_ignore
from agent_pipelines.framework.states import TERMINAL, IllegalTransition, IntentState, check_transition
from agent_pipelines.framework.tables import intent_transitions, intents

S = IntentState


def digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def file_intent_id(workflow: str, content: bytes) -> str:
    """Same bytes, same intent, whatever the file is called."""
    return f"{workflow}:{digest(content)[:24]}"


INTENT_ID_CHARS = 80  # intents.intent_id is String(80); PostgreSQL enforces it


def record_intent_id(workflow: str, record_id: str, version: str | int) -> str:
    """`workflow:record_id@version`; when that would not fit intents.intent_id (a long RFC Message-ID,
    a hostile 1 KB id) the record id is replaced by a digest of it, deterministically. The original id
    stays in the intent's intake and source_ref."""
    intent_id = f"{workflow}:{record_id}@{version}"
    if len(intent_id) <= INTENT_ID_CHARS:
        return intent_id
    hashed = f"{workflow}:h{digest(str(record_id))[:24]}@{version}"
    if len(hashed) <= INTENT_ID_CHARS:
        return hashed
    # An absurd version (or workflow name) too: digest the whole identity.
    return f"{workflow[:40]}:h{digest(f'{workflow}:{record_id}@{version}')[:32]}"


class Intent(BaseModel, frozen=True):
    intent_id: str
    workflow: str
    correlation_id: str
    state: IntentState
    reason: str | None
    source_ref: str
    source_digest: str
    intake: Any
    last_run_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL


class IntentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def register(
        self,
        *,
        intent_id: str,
        workflow: str,
        correlation_id: str,
        source_ref: str,
        source_digest: str,
        intake: Any,
        state: IntentState = S.RECEIVED,
        reason: str | None = None,
    ) -> tuple[Intent, bool]:
        """Create the intent unless it exists. Returns (intent, created)."""
        with self.db.begin() as conn:
            created = insert_intent(conn, intent_id=intent_id, workflow=workflow, correlation_id=correlation_id,
                                    source_ref=source_ref, source_digest=source_digest, intake=intake,
                                    state=state, reason=reason)
            return _get(conn, intent_id), created

    def get(self, intent_id: str) -> Intent:
        with self.db.connect() as conn:
            return _get(conn, intent_id)

    def transition(self, intent_id: str, target: IntentState, *, reason: str | None = None,
                   run_id: str | None = None) -> Intent:
        """Move an intent to `target` under a row lock; illegal moves raise IllegalTransition, a move
        by a run that does not hold the intent's live claim raises ClaimHeld. Retried on transient
        database errors (the transaction rolled back, so the retry decides afresh)."""
        return self.db.transaction(lambda conn: transition(conn, intent_id, target, reason=reason, run_id=run_id))

    def waiting_for_input(self, workflow: str, correlation_id: str) -> list[Intent]:
        with self.db.connect() as conn:
            ids = conn.execute(select(intents.c.intent_id).where(
                intents.c.workflow == workflow, intents.c.correlation_id == correlation_id,
                intents.c.state == S.WAITING_FOR_INPUT)).scalars().all()
            return [_get(conn, i) for i in ids]

    def update_intake(self, intent_id: str, intake: Any) -> None:
        """Record answered inputs on the intent (the source stays as received in source_ref)."""
        with self.db.begin() as conn:
            conn.execute(update(intents).where(intents.c.intent_id == intent_id).values(
                intake=intake, updated_at=utcnow()))

    def history(self, intent_id: str) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(select(intent_transitions).where(intent_transitions.c.intent_id == intent_id)
                                .order_by(intent_transitions.c.id)).mappings()
            return [dict(r) for r in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        with self.db.connect() as conn:
            rows = conn.execute(select(intents.c.workflow, intents.c.state, func.count())
                                .group_by(intents.c.workflow, intents.c.state))
            out: dict[str, dict[str, int]] = {}
            for wf, state, n in rows:
                out.setdefault(wf, {})[state] = n
            return out


def insert_intent(conn: Connection, *, intent_id: str, workflow: str, correlation_id: str, source_ref: str,
                  source_digest: str, intake: Any, state: IntentState = S.RECEIVED, reason: str | None = None) -> bool:
    """IntentStore.register in the caller's transaction (a sensor registering a tick's files in one):
    the intent and its first transition unless it exists. Returns whether it was created."""
    now = utcnow()
    reason = redact_text(reason) if reason else reason  # reasons reach logs and the CLI
    created = insert_ignore(
        conn,
        intents,
        dict(intent_id=intent_id, workflow=workflow, correlation_id=correlation_id, state=state,
             # The intake is the source record the workflow acts on (a sender's address is the
             # requester lookup key), so it is stored as received; what leaves it for a log, a trace
             # table, the CLI or (per policy) the model is redacted on the way.
             reason=reason, source_ref=source_ref, source_digest=source_digest, intake=intake,
             created_at=now, updated_at=now),
        ["intent_id"],
    )
    if created:
        conn.execute(_TRANSITION_ROW, dict(intent_id=intent_id, from_state=None, to_state=state, reason=reason, at=now))
    return created


def get_many(conn: Connection, intent_ids: list[str]) -> dict[str, Intent]:
    """The intents of `intent_ids` that exist, in one statement."""
    rows = conn.execute(_MANY, {"p_ids": intent_ids}).mappings() if intent_ids else []
    return {row["intent_id"]: Intent.model_validate(dict(row)) for row in rows}


_MANY = select(intents).where(intents.c.intent_id.in_(bindparam("p_ids", expanding=True)))


def _get(conn: Connection, intent_id: str) -> Intent:
    row = conn.execute(select(intents).where(intents.c.intent_id == intent_id)).mappings().first()
    if row is None:
        raise KeyError(f"unknown intent {intent_id!r}")
    return Intent.model_validate(dict(row))


_TRANSITION_ROW = intent_transitions.insert()


def _no_other_live_owner(run_id: Any, now: Any) -> Any:
    """A run may move an intent while no other run holds a live claim on it (its own, or none, or one
    whose lease ran out): transition's and transition_many's compare-and-set."""
    c = intents.c
    return or_(c.owner_run_id.is_(None), c.owner_run_id == run_id, c.lease_expires_at.is_(None),
               c.lease_expires_at <= now)


def _claim_after(target: IntentState) -> dict[str, None]:
    """Leaving the active states frees the claim: a wait or an outcome is owned by no run."""
    return {} if target in ACTIVE else {"owner_run_id": None, "lease_expires_at": None}


@lru_cache(maxsize=len(IntentState))
def _move_stmt(target: IntentState) -> Any:
    """transition's compare-and-set, built once per target (sql.py says why): still in p_from, no
    other live owner."""
    c = intents.c
    free = _no_other_live_owner(bindparam("p_run"), bindparam("p_now", type_=c.lease_expires_at.type))
    values: dict[str, Any] = dict(state=bindparam("p_to", type_=c.state.type), reason=bindparam("p_reason", type_=c.reason.type),
                                  updated_at=bindparam("p_at", type_=c.updated_at.type),
                                  last_run_id=bindparam("p_last", type_=c.last_run_id.type), **_claim_after(target))
    return update(intents).where(c.intent_id == bindparam("p_id"), c.state == bindparam("p_from"), free).values(**values)


def transition(conn: Connection, intent_id: str, target: IntentState, *, reason: str | None = None,
               run_id: str | None = None, known: Intent | None = None) -> Intent:
    """The one place an intent changes state. A run (`run_id` given) may move it only while no other
    run holds a live claim; moves made outside a run (a CLI decision, housekeeping) act on waiting
    intents, which no run holds. Moving to the state it is in is a no-op (idempotent for the owner).

    `known`: the intent as the run last saw it. The move is then one compare-and-set (still in that
    state, no other live owner) instead of a locked read first; if the row moved meanwhile, the
    locked read below decides as always."""
    c = intents.c
    reason = redact_text(reason) if reason else reason  # reasons quote inputs; they reach logs and the CLI
    if known is not None and run_id is not None and known.state != target:
        check_transition(intent_id, known.state, target)
        now = utcnow()
        moved = conn.execute(_move_stmt(target), dict(
            p_id=intent_id, p_from=str(known.state), p_run=run_id, p_now=now, p_to=str(target), p_reason=reason,
            p_at=now, p_last=run_id)).rowcount
        if moved == 1:
            return _record_move(conn, known, target, reason, run_id, now)
    # The whole row, locked: the intent returned is it with this move applied (no second read).
    row = conn.execute(for_update(conn, select(intents).where(c.intent_id == intent_id))).mappings().first()
    if row is None:
        raise KeyError(f"unknown intent {intent_id!r}")
    owner = live_owner(row["owner_run_id"], row["lease_expires_at"])
    if run_id is not None and owner is not None and owner != run_id:
        raise ClaimHeld(intent_id, owner)
    intent = Intent.model_validate(dict(row))
    if intent.state == target:
        return intent
    check_transition(intent_id, intent.state, target)
    now = utcnow()
    conn.execute(update(intents).where(c.intent_id == intent_id).values(
        state=target, reason=reason, updated_at=now, last_run_id=run_id or c.last_run_id, **_claim_after(target)))
    return _record_move(conn, intent, target, reason, run_id, now)


class Move(NamedTuple):
    """One intent's move by a run, from the state the run last saw it in (transition's `known`)."""

    known: Intent
    target: IntentState
    reason: str | None  # redacted, as transition stores it
    run_id: str


MANY_AT_ONCE = 500  # intents per statement of transition_many


def transition_many(conn: Connection, moves: Sequence[Move]) -> tuple[dict[str, Intent], list[Move]]:
    """transition's compare-and-set for many intents (each once), in one UPDATE ... RETURNING per
    (from, to, run) and 500 intents, with their history rows in one statement: a batch step's moves
    without a round trip each (issue 11). Returns the intents moved (as a read would now give them
    back) and the moves not made (the intent moved meanwhile, another run holds it, or the move is not
    allowed): the caller decides each of those with transition, whose locked read says why."""
    c = intents.c
    now = utcnow()
    groups: dict[tuple[IntentState, IntentState, str], list[Move]] = {}
    left: list[Move] = []
    for m in moves:
        try:
            check_transition(m.known.intent_id, m.known.state, m.target)
        except IllegalTransition:
            left.append(m)
            continue
        groups.setdefault((m.known.state, m.target, m.run_id), []).append(m)
    made: list[Move] = []
    for (source, target, run_id), group in groups.items():
        free, claim = _no_other_live_owner(run_id, now), _claim_after(target)
        for start in range(0, len(group), MANY_AT_ONCE):
            part = {m.known.intent_id: m for m in group[start:start + MANY_AT_ONCE]}
            reasons = {i: m.reason for i, m in part.items()}
            same = set(reasons.values())
            reason: Any = same.pop() if len(same) == 1 else case(reasons, value=c.intent_id)
            done = set(conn.execute(
                update(intents).where(c.intent_id.in_(list(part)), c.state == str(source), free)
                .values(state=str(target), reason=reason, updated_at=now, last_run_id=run_id, **claim)
                .returning(c.intent_id)).scalars())
            made += [m for i, m in part.items() if i in done]
            left += [m for i, m in part.items() if i not in done]
    if made:
        conn.execute(_TRANSITION_ROW, [dict(intent_id=m.known.intent_id, from_state=str(m.known.state),
                                            to_state=str(m.target), reason=m.reason, run_id=m.run_id, at=now)
                                       for m in made])
    dialect = conn.dialect.name
    return {m.known.intent_id: after_move(m.known, m.target, m.reason, m.run_id, now, dialect) for m in made}, left


def _record_move(conn: Connection, before: Intent, target: IntentState, reason: str | None, run_id: str | None,
                 now: datetime) -> Intent:
    """The history row of a move just made, and the intent as a read would now give it back."""
    conn.execute(_TRANSITION_ROW, dict(intent_id=before.intent_id, from_state=str(before.state), to_state=str(target),
                                       reason=reason, run_id=run_id, at=now))
    return after_move(before, target, reason, run_id, now, conn.dialect.name)


def after_move(before: Intent, target: IntentState, reason: str | None, run_id: str | None, now: datetime,
               dialect: str) -> Intent:
    """The intent as a read gives it back once moved to `target` (`reason` redacted, as transition stores it)."""
    stored = now.replace(tzinfo=None) if dialect == "sqlite" else now
    return before.model_copy(update={"state": target, "reason": reason, "updated_at": stored,
                                     "last_run_id": run_id or before.last_run_id})
