"""Durable completion: every intent a run started ends in a recorded state.

The recovery sweeper finds intents that no live run owns although they are not finished and not waiting
(their run's lease ran out, their worker died, their run failed on a fault), and launches a recovery
run for each: the main job, whose read step resumes at commit with the stored decided plan when writes
landed or the plan was approved, and starts again from read otherwise. Attempts are bounded by the
policy pack with backoff; after the last one the intent needs attention and an escalation is filed.

`stranded` and `partial_commits` are computed from the tables each time, for `status`."""

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import BaseModel
from sqlalchemy import Connection, and_, func, or_, select, update

from agent_pipelines.framework import approvals, controls
from agent_pipelines.framework.claims import live_owner
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.intents import transition
from agent_pipelines.framework.ledger import LANDED, WriteStatus
from agent_pipelines.framework.redaction import redact_text
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.steps import TAG
from agent_pipelines.framework.tables import approval_requests, intent_steps, intent_transitions, intents, writes
from agent_pipelines.framework.workflow import Workflow

# Not finished and not waiting for a person, an answer or a kill switch: someone must move these on.
SWEEPABLE = (S.RECEIVED, S.RUNNING, S.COMMITTING, S.VERIFYING, S.FAILED)
# Dagster run statuses that mean "a run of this intent is still on its way".
PENDING_RUN = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING)
IN_PROGRESS = (*PENDING_RUN, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


class Stranded(BaseModel):
    intent_id: str
    workflow: str
    state: S
    reason: str | None
    owner_run_id: str | None
    last_run_id: str | None
    recovery_attempts: int
    updated_at: datetime
    approval_id: str | None = None  # set for an approved change whose continuation never committed it


def batch_intent_ids(run_config: Any) -> list[str]:
    """The intents a batch run was launched for (its plan op's config)."""
    for op, conf in ((run_config or {}).get("ops") or {}).items():
        if op.endswith("__batch_plan"):
            return list((conf.get("config") or {}).get("intent_ids") or [])
    return []


def _unowned_past_lease(now: datetime, lease_s: float) -> Any:
    """No live claim: the owner's lease ran out, or there is no owner and nothing happened for a lease."""
    c = intents.c
    return and_(c.state.in_([str(s) for s in SWEEPABLE]),
                or_(and_(c.owner_run_id.is_not(None), c.lease_expires_at < now),
                    and_(c.owner_run_id.is_(None), c.updated_at < now - timedelta(seconds=lease_s))))


def stranded(conn: Connection, lease_s: float, *, due_only: bool = False, limit: int | None = None) -> list[Stranded]:
    """Non-terminal, non-waiting intents with no live run past their lease. `due_only`: only those
    whose recovery backoff has passed (what the sweeper acts on now)."""
    now = utcnow()
    c = intents.c
    stmt = select(c.intent_id, c.workflow, c.state, c.reason, c.owner_run_id, c.last_run_id, c.recovery_attempts,
                  c.updated_at).where(_unowned_past_lease(now, lease_s)).order_by(c.updated_at)
    if due_only:
        stmt = stmt.where(or_(c.next_recovery_at.is_(None), c.next_recovery_at <= now))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [Stranded.model_validate(dict(r)) for r in conn.execute(stmt).mappings()]


def stalled_continuations(conn: Connection, lease_s: float, *, due_only: bool = False) -> list[Stranded]:
    """Approved changes whose intent still waits a lease after the decision: the continuation run
    died before its commit (its run_key is spent, so the approval sensor will not launch it again)."""
    now = utcnow()
    c, a = intents.c, approval_requests.c
    stmt = (select(c.intent_id, c.workflow, c.state, c.reason, c.owner_run_id, c.last_run_id, c.recovery_attempts,
                   c.updated_at, a.approval_id)
            .join(approval_requests, a.intent_id == c.intent_id)
            .where(a.status == approvals.ApprovalStatus.APPROVED, c.state == S.WAITING_FOR_APPROVAL,
                   a.decided_at < now - timedelta(seconds=lease_s)))
    if due_only:
        stmt = stmt.where(or_(c.next_recovery_at.is_(None), c.next_recovery_at <= now))
    return [Stranded.model_validate(dict(r)) for r in conn.execute(stmt).mappings()]


def partial_commits(conn: Connection) -> list[str]:
    """Intents with some but not all of their decided writes in the ledger, and no live run."""
    landed = (select(writes.c.intent_id, func.count().label("n")).where(writes.c.status.in_(LANDED))
              .group_by(writes.c.intent_id).subquery())
    rows = conn.execute(
        select(intent_steps.c.intent_id, intent_steps.c.output, landed.c.n, intents.c.owner_run_id,
               intents.c.lease_expires_at)
        .join(landed, landed.c.intent_id == intent_steps.c.intent_id)
        .join(intents, intents.c.intent_id == intent_steps.c.intent_id)
        .where(intent_steps.c.step == "commit"))
    return sorted(r.intent_id for r in rows
                  if 0 < r.n < len((r.output or {}).get("plan") or ())
                  and live_owner(r.owner_run_id, r.lease_expires_at) is None)


def pending_external(conn: Connection) -> list[dict[str, Any]]:
    """External writes whose call was made (or about to be) but whose outcome is not recorded: a crash,
    a timeout or a lost answer. The intent's recovery run reaches the same write again at commit, where
    framework/external.py reads the external system back before it calls again."""
    c = writes.c
    stmt = select(c.intent_id, c.workflow, c.action, c.tool, c.run_id, c.at).where(c.status == WriteStatus.PENDING)
    return [dict(r) for r in conn.execute(stmt.order_by(c.id)).mappings()]


class SweepOutcome(BaseModel):
    run_requests: list[Any] = []
    gave_up: list[str] = []
    marked_failed: list[str] = []
    waiting_on_run: list[str] = []


class Sweeper:
    """One pass over the stranded intents. Each decision is a compare-and-set on the intent's attempt
    count, so two sweepers (a `tick` and the daemon) never launch the same attempt twice; the run_key
    (`recover:<intent>:<attempt>`) makes Dagster launch each attempt once as well."""

    def __init__(self, db: Database, instance: dg.DagsterInstance, workflows: Mapping[str, Workflow], *,
                 lease_s: float, backoff_s: float | None = None, batch: int = 100) -> None:
        self.db, self.instance, self.workflows = db, instance, workflows
        self.lease_s, self.backoff_s, self.batch = lease_s, backoff_s, batch

    def sweep(self, request: Any) -> SweepOutcome:
        """`request(workflow, intent_id, attempt, approval_id) -> RunRequest` builds the recovery run
        (the approval's continuation when `approval_id` is set, else the main job)."""
        out = SweepOutcome()
        with self.db.connect() as conn:
            found = [s for s in [*stranded(conn, self.lease_s, due_only=True, limit=self.batch),
                                 *stalled_continuations(conn, self.lease_s, due_only=True)]
                     if s.workflow in self.workflows]
        runs = self._in_progress_runs([s.intent_id for s in found])
        for s in found:
            if self._still_running(s, runs.get(s.intent_id, []), out):
                continue
            if controls.launch_blocked(self.db, s.workflow) is not None:
                continue  # a kill switch holds the workflow: nothing new is launched for it
            policy = self.workflows[s.workflow].policy.recovery
            if s.recovery_attempts >= policy.max_attempts:
                if self._give_up(s):
                    out.gave_up.append(s.intent_id)
                continue
            attempt = s.recovery_attempts + 1
            delay = policy.delay(attempt) if self.backoff_s is None else self.backoff_s * 2 ** (attempt - 1)
            why = self._why(s)
            if self._take_attempt(s, attempt, delay, f"recovery attempt {attempt}/{policy.max_attempts}: {why}"):
                out.run_requests.append(request(s.workflow, s.intent_id, attempt, s.approval_id))
        return out

    def _in_progress_runs(self, intent_ids: list[str]) -> dict[str, list[dg.RunRecord]]:
        if not intent_ids:
            return {}
        records = self.instance.get_run_records(filters=dg.RunsFilter(
            statuses=list(IN_PROGRESS), tags={f"{TAG}/intent_id": intent_ids}))
        out: dict[str, list[dg.RunRecord]] = {}
        for r in records:
            out.setdefault(r.dagster_run.tags.get(f"{TAG}/intent_id", ""), []).append(r)
        # A batch run names its intents in its config, not its tags: a queued batch will get to them.
        wanted = set(intent_ids)
        for r in self.instance.get_run_records(filters=dg.RunsFilter(statuses=list(IN_PROGRESS),
                                                                       tags={f"{TAG}/shape": "batch"})):
            for intent_id in wanted.intersection(batch_intent_ids(r.dagster_run.run_config)):
                out.setdefault(intent_id, []).append(r)
        return out

    def _still_running(self, s: Stranded, records: list[dg.RunRecord], out: SweepOutcome) -> bool:
        """A queued or starting run will get to the intent; a started one is alive while it is younger
        than a lease. A started run older than that whose intent's lease ran out has a dead worker:
        it is marked failed (through the instance, so the UI shows the truth) and the intent recovered."""
        horizon = utcnow().timestamp() - self.lease_s
        alive = False
        for r in records:
            run = r.dagster_run
            if run.status in PENDING_RUN or (r.start_time or r.create_timestamp.timestamp()) > horizon:
                alive = True
            elif run.tags.get(f"{TAG}/shape") == "batch" and self._holds_claims(run.run_id):
                # A batch renews the leases of the chunk it works on; its later chunks wait their turn.
                alive = True
            elif run.status == dg.DagsterRunStatus.STARTED:
                self.instance.report_run_failed(run, message=(
                    f"agent_pipelines recovery: the run stopped renewing its claim on intent {s.intent_id} "
                    f"(lease {self.lease_s:g}s); its worker is presumed dead and the intent is recovered"))
                out.marked_failed.append(run.run_id)
        if alive:
            out.waiting_on_run.append(s.intent_id)
        return alive

    def _holds_claims(self, run_id: str) -> bool:
        with self.db.connect() as conn:
            return conn.execute(select(func.count()).select_from(intents).where(
                intents.c.owner_run_id == run_id, intents.c.lease_expires_at > utcnow())).scalar_one() > 0

    def _why(self, s: Stranded) -> str:
        run = s.owner_run_id or s.last_run_id
        if s.approval_id is not None:
            return f"{s.approval_id} was approved but its continuation never committed the change"
        if s.state == S.FAILED:
            return f"retrying after failure: {s.reason or 'no reason recorded'}"
        if s.state == S.RECEIVED:
            return "registered but no run took it within its lease"
        return f"run {run or '?'} stopped in {s.state} without finishing (no heartbeat within the lease)"

    def _take_attempt(self, s: Stranded, attempt: int, delay_s: float, note: str) -> bool:
        """Count the attempt (compare-and-set on the count) and record why, in one transaction."""

        def take(conn: Connection) -> bool:
            now = utcnow()
            done = conn.execute(update(intents).where(
                intents.c.intent_id == s.intent_id, intents.c.recovery_attempts == s.recovery_attempts,
                intents.c.state == s.state).values(
                recovery_attempts=attempt, reason=redact_text(note)[:2000],
                # The recovery run gets a lease to take the claim before the next attempt may start.
                next_recovery_at=now + timedelta(seconds=self.lease_s + delay_s)))
            if done.rowcount != 1:
                return False
            conn.execute(intent_transitions.insert().values(intent_id=s.intent_id, from_state=s.state,
                                                            to_state=s.state, reason=redact_text(note)[:2000],
                                                            at=now))
            return True

        return self.db.transaction(take)

    def _give_up(self, s: Stranded) -> bool:
        reason = (f"recovery gave up after {s.recovery_attempts} attempt(s); it was {s.state}: "
                  f"{s.reason or 'no reason recorded'}")[:2000]

        def escalate(conn: Connection) -> bool:
            row = conn.execute(select(intents.c.state).where(intents.c.intent_id == s.intent_id)).first()
            if row is None or row.state != s.state:
                return False
            transition(conn, s.intent_id, S.NEEDS_ATTENTION, reason=reason)
            approvals.escalate(conn, "recovery_exhausted", f"{s.intent_id}#{s.recovery_attempts}", s.intent_id,
                               redact_text(reason))
            return True

        return self.db.transaction(escalate)

