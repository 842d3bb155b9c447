"""The claim: one live run per intent. A run takes the intent by compare-and-set (owner run id plus a
lease), renews the lease at every step, and gives it up when the intent leaves the active states. A
second run of the same intent finds the claim held and stops without changing anything; a run whose
worker died loses the claim when its lease expires, and the recovery sweeper takes over from there."""

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, bindparam, exists, or_, select, update

from agent_pipelines.framework.db import Database, aware, utcnow
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.tables import controls, intents

DEFAULT_LEASE_S = 120.0
# The states a run works in; leaving them (to a wait, a terminal or a trouble state) frees the claim.
ACTIVE: frozenset[S] = frozenset({S.RUNNING, S.COMMITTING, S.VERIFYING})


class ClaimHeld(Exception):
    """Another live run owns the intent: this run must stop and change nothing."""

    def __init__(self, intent_id: str, owner: str) -> None:
        super().__init__(f"intent {intent_id} is claimed by run {owner}")
        self.intent_id, self.owner = intent_id, owner


def acquire(db: Database, intent_id: str, run_id: str, lease_s: float, *, dead_owner: str | None = None) -> str | None:
    """Take or renew the claim. Returns None when `run_id` holds it now, else the owner's run id.

    The UPDATE's WHERE is the compare-and-set: PostgreSQL re-checks it on the locked row and SQLite
    runs it under the database write lock, so of two racing runs exactly one matches. `dead_owner`
    names a run known to have ended (its claim can be taken before its lease runs out)."""

    return db.transaction(lambda conn: take(conn, intent_id, run_id, lease_s, dead_owner=dead_owner))


# An intent in one of these states writes nothing more, claimed or not (the gateway says why: _stop).
WRITES_STOPPED: tuple[S, ...] = (S.QUARANTINED, S.PARKED)


@lru_cache(maxsize=32)
def _take_stmt(*, dead: bool, switches: int = 0) -> Any:
    """take's compare-and-set, built once per shape (sql.py says why). With `switches` (how many), a
    write's conditions too: no kill switch of `p_switch0..` on and the intent not stopped (one
    statement, not three)."""
    c = intents.c
    free = or_(c.owner_run_id.is_(None), c.owner_run_id == bindparam("p_run"),
               c.lease_expires_at < bindparam("p_now", type_=c.lease_expires_at.type),
               *([c.owner_run_id == bindparam("p_dead")] if dead else []))
    fence = [c.state.not_in([str(s) for s in WRITES_STOPPED]),
             ~exists().where(controls.c.kind == "kill_switch", controls.c.value == "on",
                             controls.c.key.in_([bindparam(f"p_switch{i}") for i in range(switches)]))
             ] if switches else []
    return update(intents).where(c.intent_id == bindparam("p_id"), free, *fence).values(
        owner_run_id=bindparam("p_owner", type_=c.owner_run_id.type),
        lease_expires_at=bindparam("p_lease", type_=c.lease_expires_at.type),
        heartbeat_at=bindparam("p_beat", type_=c.heartbeat_at.type))


def take(conn: Connection, intent_id: str, run_id: str, lease_s: float, *, dead_owner: str | None = None,
         switches: tuple[str, ...] = ()) -> str | None:
    """acquire's compare-and-set on the caller's transaction (a write's own: StepRun.fence).

    With `switches` (the keys of the kill switches the writes answer to), the claim is also refused while
    one of them is on or the intent is quarantined or parked: a refusal then returns the owner, or
    `run_id` when the claim is free or already this run's, and the caller reads which condition refused
    it (gateway._write_fence)."""
    now = utcnow()
    c = intents.c
    params = dict(p_id=intent_id, p_run=run_id, p_now=now, p_dead=dead_owner, p_owner=run_id,
                  p_lease=now + timedelta(seconds=lease_s), p_beat=now)
    params.update({f"p_switch{i}": k for i, k in enumerate(switches)})
    taken = conn.execute(_take_stmt(dead=dead_owner is not None, switches=len(switches)), params)
    if taken.rowcount == 1:
        return None
    row = conn.execute(select(c.owner_run_id).where(c.intent_id == intent_id)).first()
    if row is None:
        raise KeyError(f"unknown intent {intent_id!r}")
    # Refused by a switch or a stopped intent, the claim may be free or this run's: never None then.
    return (row.owner_run_id or run_id) if switches else row.owner_run_id


def renew(db: Database, intent_id: str, run_id: str, lease_s: float) -> bool:
    """Extend this run's lease if it still owns the intent (never takes a claim). False: it lost it."""
    with db.begin() as conn:
        now = utcnow()
        done = conn.execute(update(intents).where(intents.c.intent_id == intent_id, intents.c.owner_run_id == run_id)
                            .values(lease_expires_at=now + timedelta(seconds=lease_s), heartbeat_at=now))
        return done.rowcount == 1


@contextmanager
def _beating(renew_once: Callable[[], bool], lease_s: float, name: str) -> Iterator[None]:
    """Call `renew_once` every third of a lease in a background thread until the block ends (or it
    returns False: nothing left to renew)."""
    if lease_s < 1:  # a lease this short (tests) expires between any two beats: nothing to keep alive
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lease_s / 3):
            try:
                if not renew_once():
                    return  # not (or no longer) the owner: the step's own checks decide what follows
            except Exception:  # noqa: BLE001 - a failed beat is retried on the next one
                continue

    thread = threading.Thread(target=beat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def heartbeat(db: Database, intent_id: str, run_id: str, lease_s: float) -> AbstractContextManager[None]:
    """Renew the lease in the background while a step works, so the lease measures whether the worker
    is alive, not how long a step takes: a step longer than the lease (a slow model, an import on a busy
    machine) keeps its claim, and a killed worker loses it one lease after its last beat."""
    return _beating(lambda: renew(db, intent_id, run_id, lease_s), lease_s, f"claim-heartbeat:{intent_id}")


def release(conn: Connection, intent_id: str, run_id: str | None = None) -> None:
    """Free the claim (only this run's, when `run_id` is given)."""
    stmt = update(intents).where(intents.c.intent_id == intent_id)
    if run_id is not None:
        stmt = stmt.where(intents.c.owner_run_id == run_id)
    conn.execute(stmt.values(owner_run_id=None, lease_expires_at=None))


def live_owner(owner: str | None, lease_expires_at: object) -> str | None:
    """The owner while its lease runs, else None."""
    if owner is None or lease_expires_at is None:
        return None
    return owner if aware(lease_expires_at) > utcnow() else None  # type: ignore[arg-type]


def renew_many(db: Database, intent_ids: list[str], run_id: str, lease_s: float) -> int:
    """Extend this run's lease on every intent of a batch it still owns, in one statement per 500 ids."""
    now = utcnow()
    renewed = 0
    with db.begin() as conn:
        for i in range(0, len(intent_ids), 500):
            done = conn.execute(update(intents).where(intents.c.intent_id.in_(intent_ids[i:i + 500]),
                                                      intents.c.owner_run_id == run_id)
                                .values(lease_expires_at=now + timedelta(seconds=lease_s), heartbeat_at=now))
            renewed += done.rowcount
    return renewed


def acquire_many(db: Database, intent_ids: list[str], run_id: str, lease_s: float, states: frozenset[S]) -> None:
    """Take the claim on every intent of a batch that is free and in one of `states`, in one statement
    per 500 ids (the same compare-and-set as acquire). The others are left to acquire, one by one."""
    now = utcnow()
    c = intents.c
    with db.begin() as conn:
        for i in range(0, len(intent_ids), 500):
            conn.execute(update(intents).where(
                c.intent_id.in_(intent_ids[i:i + 500]), c.state.in_([str(s) for s in states]),
                or_(c.owner_run_id.is_(None), c.owner_run_id == run_id, c.lease_expires_at < now))
                .values(owner_run_id=run_id, lease_expires_at=now + timedelta(seconds=lease_s), heartbeat_at=now))


def heartbeat_many(db: Database, intent_ids: list[str], run_id: str, lease_s: float) -> AbstractContextManager[None]:
    """A batch step's heartbeat: while it works through its intents one by one, the leases of all of
    them are renewed together, so an intent waiting its turn is not taken for dead by the sweeper."""
    def renew_all() -> bool:
        renew_many(db, intent_ids, run_id, lease_s)
        return True

    return _beating(renew_all, lease_s if intent_ids else 0.0, f"claim-heartbeat:batch:{run_id}")
