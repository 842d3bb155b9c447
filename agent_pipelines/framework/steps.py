"""What every step of an agent job shares: the value that flows between steps (Carry), and StepRun,
which gives a step its intent, tracer, gateway and budget, and wraps it in the framework's guarantees:
the claim (one live run per intent), the kill switch, the deadline, and a recorded outcome for every
failure."""

import json
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import BaseModel, ConfigDict, SerializeAsAny
from sqlalchemy import Connection, select, update

from agent_pipelines.framework import approvals, claims, controls, otel
from agent_pipelines.framework.budgets import BudgetExceeded, RunBudget
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.write_stops import KillSwitchEngaged
from agent_pipelines.framework.intents import Intent, IntentStore, Move, after_move, transition, transition_many
from agent_pipelines.framework.ledger import WriteReceipt, has_writes
from agent_pipelines.framework.policy import Mode, PolicyDecision, writes_land
from agent_pipelines.framework.quality import SuiteResult
from agent_pipelines.framework.redaction import redact_text
from agent_pipelines.framework.rowbuffer import RowBuffer, Sink, write_pending
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IllegalTransition, check_transition
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.tables import parked_intents
from agent_pipelines.framework.trace import Tracer
from agent_pipelines.framework.workflow import Step, Workflow, WriteAction

TAG = "agent_pipelines"
DEFERRED = "deferred to a solo retry after the batch"  # the reason's prefix of such an intent


class Carry(BaseModel):
    """What flows from step to step. It holds the intake as received, so the IO manager (StepStore)
    pickles it into our database's step_outputs, never into Dagster's storage; re-execution from
    failure resumes from it there."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    intent_id: str
    intake: SerializeAsAny[BaseModel]
    context: SerializeAsAny[BaseModel] | None = None
    proposal: SerializeAsAny[BaseModel] | None = None
    decision: PolicyDecision | None = None
    facts: dict[str, Any] = {}
    plan: tuple[WriteAction, ...] | None = None  # set by an approval: exactly the approved writes
    approval_id: str | None = None
    reuse: tuple[str, ...] = ()  # steps whose persisted output a resumed intent reuses
    receipts: tuple[WriteReceipt, ...] = ()
    # A recovered intent resumes at commit with its stored decided plan: the steps before it pass it on.
    resumed: bool = False


class IntentSettled(Exception):
    """The intent already reached an outcome (e.g. a re-execution of a completed run): nothing to do."""


class StepFailed(Exception):
    """Raised inside a step to end the intent in `state` with `reason` (and fail the op)."""

    def __init__(self, state: S, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason


batch_log = logging.getLogger("agent_pipelines.batch")


@dataclass
class BatchScope:
    """What the intents of one batch step share. Dagster's event log gets one summary per step, not an
    event per intent (each event is a storage commit): per-intent detail goes to our trace tables, and
    the events below are collected here and logged once, per table or suite, by the batch op."""

    step: str
    started_at: float
    expect: frozenset[S]  # the states an intent may be in when this step takes it
    # Intents of one batch are read before any of them commits, so one may change a record another
    # read (two invoices on one PO): such an intent is deferred (batch.DEFERRED) and retried alone,
    # from read, after the batch, instead of needing attention. False for that solo retry.
    defer_conflicts: bool = True
    recovery: bool = False  # the solo retry starts intents the batch left failed
    # Read for the whole chunk at the step's start: the intents this run owns (their leases renewed in
    # one statement; nobody else may move an owned intent) and the kill switches. A switch engaged
    # during the step parks the chunk's intents at the next step; the gateway refuses writes at once.
    owned: dict[str, Intent] = field(default_factory=dict)
    switches_read: bool = False
    switches: list[Any] = field(default_factory=list)  # every engaged switch (controls.Engaged)
    engaged: Any = None  # the one covering this workflow
    suites: list[tuple[str, SuiteResult]] = field(default_factory=list)
    writes: list[tuple[str, WriteReceipt]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # The step's bookkeeping rows (trace, sources, step outputs), written together (rowbuffer.py).
    rows: RowBuffer | None = None
    # Each owned intent's budget counts so far in this run, read for the chunk (budgets.load_bases).
    budget_bases: dict[str, Any] = field(default_factory=dict)
    # Each owned intent's LLM tokens and cost so far in this run (budgets.load_spent), read by propose.
    spent: dict[str, Any] = field(default_factory=dict)
    # What each owned intent has read so far (provenance.Sources), read for the chunk by the steps that
    # check provenance (validate, commit) before any of them keeps a new source.
    sources: dict[str, Any] = field(default_factory=dict)
    # The commit step's owned intents that had ledger rows when it started (StepRun.has_writes).
    writes_before: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class DeferredMove:
    """A batch step's move of one intent, left for its chunk's flush (StepRun.move `with_chunk`). The
    flush makes a chunk's moves together (rowbuffer.run_deferred: run_many)."""

    move: Move

    def __call__(self, conn: Connection) -> None:
        DeferredMove.run_many(conn, [self])

    @staticmethod
    def run_many(conn: Connection, items: list["DeferredMove"]) -> None:
        """transition_many for each stretch of `items` that names an intent once; a move it could not
        make is decided alone (transition), which says why."""
        stretch: dict[str, Move] = {}
        for m in [d.move for d in items] + [None]:
            if m is None or m.known.intent_id in stretch:
                _, left = transition_many(conn, list(stretch.values()))
                for miss in left:
                    try:
                        transition(conn, miss.known.intent_id, miss.target, reason=miss.reason, run_id=miss.run_id,
                                   known=miss.known)
                    except (claims.ClaimHeld, IllegalTransition) as exc:
                        # Moved meanwhile by someone else (an operator, a run that took over the claim):
                        # it stays where they put it, and the next step passes it over (checkpoint).
                        batch_log.warning("intent %s not moved to %s: %s", miss.known.intent_id, miss.target, exc)
                stretch = {}
            if m is not None:
                stretch[m.known.intent_id] = m


def weakly(method: Callable[..., Any]) -> Callable[..., Any]:
    """A bound method that does not keep its object alive. A StepRun hands its own methods to the
    tracer and gateway it owns: held strongly, they would make every StepRun a reference cycle that
    only Python's cyclic collector frees (in a batch, ~300 objects an intent, and the
    collections they set off; issue 11). The StepRun outlives every call made through it."""
    ref, name = weakref.WeakMethod(method), method.__qualname__

    def call(*args: Any, **kwargs: Any) -> Any:
        bound = ref()
        if bound is None:
            raise ReferenceError(f"{name}: its StepRun is gone")
        return bound(*args, **kwargs)

    return call


class StepRun:
    """Per-op helpers: the intent store, a tracer wired to the run log, the gateway, the step context.
    `batch` set: one intent of a batch run (quiet log, collected events, per-intent budget)."""

    def __init__(self, wf: Workflow, context: dg.OpExecutionContext, runtime: AgentRuntime, intent_id: str,
                 approval_id: str | None = None, carry: "Carry | None" = None,
                 batch: BatchScope | None = None) -> None:
        self.wf, self.ctx, self.runtime, self.batch = wf, context, runtime, batch
        self.db = runtime.db
        self.store = IntentStore(self.db)
        self.run_id = context.run_id
        self.approval_id = approval_id
        self.carry = carry  # the commit step's input, kept with a park so the release resumes from it
        # Pinned per run by its tags; a run launched without them (a test, the UI launchpad) gets the
        # policy pack's mode, never an operator setting that changed after launch.
        self.mode = Mode(context.run.tags.get(f"{TAG}/mode", wf.policy.rollout.mode))
        self.tracer = Tracer(self.db, workflow=wf.name, intent_id=intent_id, run_id=self.run_id,
                             emit=None if batch else weakly(self._emit),
                             redact_fields=wf.policy.data_handling.redact_fields,
                             sink=batch.rows.sink(intent_id) if batch is not None and batch.rows is not None else None)
        started = batch.started_at if batch else context.instance.get_run_stats(self.run_id).start_time
        self.budget = RunBudget(self.db, wf.policy.budgets, self.run_id, started_at=started, intent_id=intent_id,
                                recorded=self.tracer.recorded_calls,
                                preloaded=(lambda: batch.budget_bases.get(intent_id)) if batch is not None else None,
                                # taken once: another StepRun of this intent in this step reads the table
                                spent=self.tracer.recorded_spent,
                                preloaded_spent=(lambda: batch.spent.pop(intent_id, None)) if batch is not None else None)
        self.gateway = ToolGateway(wf.registry, wf.policy, self.db, self.tracer, mode=self.mode, budget=self.budget,
                                   fence=weakly(self.fence),
                                   stop_hint=weakly(self._stop_hint) if batch is not None else None,
                                   preloaded_sources=(lambda: batch.sources.pop(intent_id, None)) if batch else None)
        self.intent_id = intent_id
        self.lease_s = runtime.lease_seconds
        self._intent: Intent | None = None  # read once per step (see intent())
        # OpenTelemetry (None when off): this intent's trace in this run, closed by finish_trace.
        self.otel = otel.IntentTrace.open(wf.name, intent_id, self.run_id, started, str(self.mode))
        self._guarded = self._trace_finished = False

    def _emit(self, kind: str, event: dict[str, Any]) -> None:
        self.ctx.log.info(f"trace.{kind} {json.dumps(event, default=str, sort_keys=True)}")

    def log(self, message: str) -> None:
        """The run log for a one-intent run; in a batch, the process log (the trace tables hold the detail)."""
        if self.batch is None:
            self.ctx.log.info(message)
        else:
            batch_log.debug(message)

    def intent(self) -> Intent:
        """The intent as this step last saw it: read at the checkpoint (or first use) and updated by
        move(). While this run holds the claim, nothing else moves it."""
        if self._intent is None and self.batch is not None:  # read for the chunk (owned by this run)
            self._intent = self.batch.owned.get(self.intent_id)
        if self._intent is None:
            self._intent = self.store.get(self.intent_id)
        return self._intent

    def step(self) -> Step:
        return Step(intent=self.intent(), tools=self.gateway, run_id=self.run_id, log=self.log)

    @property
    def sink(self) -> Sink:
        """Where this step's bookkeeping rows go: now, or with its batch step's (rowbuffer.py)."""
        return self.tracer.sink

    def move(self, state: S, reason: str | None = None, *, with_chunk: bool = False) -> Intent:
        """Move the intent, with its pending rows: a park or an outcome never leaves the evidence that
        led to it behind in a buffer.

        `with_chunk`: in a batch step, the move commits with the chunk's rows when the step ends
        (Batch.finish), not in a transaction of its own (issue 11: one fewer commit per intent and
        step). Only for moves nothing acts on before the step ends: a crash before that leaves the
        intent where it was, and the step (batch.EXPECT) or the recovery sweeper takes it from there.
        Never for COMMITTING, which must be durable before the first write. Any later move of the
        intent, a flush of its rows or a fresh read of it (checkpoint) runs it first."""
        if with_chunk and self.batch is not None and self.batch.rows is not None:
            return self._move_later(state, reason)
        if self.batch is not None and reason is None and self._intent is not None and self._intent.state == state:
            return self._intent  # moved there with its chunk (Batch._start_commit), by this run, which holds it
        rows, earlier = self.sink.take(), self.sink.take_deferred()
        try:
            intent = self.db.transaction(lambda conn: (
                write_pending(conn, rows, earlier),
                transition(conn, self.intent_id, state, reason=reason, run_id=self.run_id, known=self._intent))[1])
        except BaseException:
            self.sink.put_back(rows)
            for fn in earlier:
                self.sink.defer(fn)
            raise
        self._intent = intent
        self.log(f"intent {self.intent_id} -> {intent.state}" + (f": {intent.reason}" if reason else ""))
        return intent

    def _move_later(self, state: S, reason: str | None) -> Intent:
        known, intent_id, run_id = self.intent(), self.intent_id, self.run_id
        if known.state == state:  # as transition: moving to the state it is in changes nothing
            return known
        check_transition(intent_id, known.state, state)
        reason = redact_text(reason) if reason else reason
        self.sink.defer(DeferredMove(Move(known, state, reason, run_id)))
        self._intent = after_move(known, state, reason, run_id, utcnow(), self.db.dialect)
        self.log(f"intent {intent_id} -> {state} (with the chunk)" + (f": {reason}" if reason else ""))
        return self._intent

    @property
    def writes_land(self) -> bool:
        return writes_land(self.mode)

    def md(self, value: Any) -> dg.MetadataValue:
        """JSON metadata for the run log, redacted like the trace."""
        return dg.MetadataValue.json(self.tracer.redact(json.loads(json.dumps(value, default=str))))

    def park(self, state: S, reason: str) -> None:
        """End this run here with the intent in `state` (no output: later steps are skipped)."""
        self.move(state, reason)
        self.tracer.note("outcome", {"state": state, "reason": reason})

    def output(self, carry: Carry, **extra: Any) -> dg.Output:
        md = {"intent_id": self.intent_id, "mode": str(self.mode), "trace": dg.MetadataValue.json(self.tracer.events),
              **extra}
        return dg.Output(carry, metadata=md)

    def check_events(self, suites: tuple[SuiteResult, ...]) -> None:
        if self.batch is not None:
            self.batch.suites.extend((self.intent_id, s) for s in suites)
            return
        for s in suites:
            self.ctx.log_event(dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(s.asset.split("/")), check_name=s.suite.replace(".", "__"), passed=s.passed,
                metadata={"intent_id": self.intent_id, "evaluated": s.evaluated,
                          "failed": self.md(list(s.failed))}))

    def wrote(self, receipt: WriteReceipt) -> None:
        """A write landed (or was found landed): a materialization of its system-of-record table."""
        if self.batch is not None:
            self.batch.writes.append((self.intent_id, receipt))
            return
        self.ctx.log_event(dg.AssetMaterialization(
            asset_key=dg.AssetKey(["sor", receipt.table]),
            description=f"{receipt.action} for intent {self.intent_id}",
            metadata={"intent_id": self.intent_id, "record": receipt.key, "status": str(receipt.status),
                      "idempotency_key": receipt.idempotency_key,
                      "before": self.md(receipt.before or {}), "after": self.md(receipt.after or {})}))

    def requested(self, req: dict[str, Any]) -> None:
        """An approval request's console link where an operator looks: the run's tags and an observation
        of the approvals/pending_queue asset (the step parks, so there is no output to carry metadata)."""
        if self.batch is not None:
            self.batch.requests.append(req)
            return
        link = approvals.console_link(self.runtime.console_url, req["approval_id"])
        self.ctx.instance.add_run_tags(self.run_id, {f"{TAG}/approval_id": req["approval_id"],
                                                     f"{TAG}/console_url": link})
        self.ctx.log_event(dg.AssetObservation(asset_key=dg.AssetKey(["approvals", "pending_queue"]), metadata={
            "approval_id": req["approval_id"], "intent_id": req["intent_id"], "console_url": dg.MetadataValue.url(link)}))

    def checkpoint(self) -> None:
        """First thing inside every step's guard: take or renew this run's claim on the intent (another
        live run's claim stops this run), then a kill switch parks the intent and an overrun deadline
        quarantines it. In a batch, an intent no longer in a state this step takes (a re-execution
        from failure: the parent run already moved it on or parked it) is passed over."""
        owned = self.batch.owned.pop(self.intent_id, None) if self.batch is not None else None
        if owned is None:
            self.sink.flush()  # a move left for the chunk's flush (move(with_chunk=True)) lands before a fresh read
            self.claim()
        self._intent = owned  # None: read afresh, now that this run holds the claim
        if (intent := self.intent()).is_terminal:
            self.release()
            raise IntentSettled(f"intent {self.intent_id} is already {intent.state}: nothing to do")
        if self.batch is not None and intent.state not in self.batch.expect:
            raise IntentSettled(f"intent {self.intent_id} is {intent.state}: not for the {self.batch.step} step")
        if self.batch is not None and self.batch.switches_read:
            engaged = self.batch.engaged
        else:
            with self.db.connect() as conn:
                engaged = controls.blocking(conn, self.wf.name)
        if engaged is not None:
            raise KillSwitchEngaged(engaged)
        self.budget.check_wall()

    def _stop_hint(self, tool: str) -> tuple[Any, str | None]:
        """For the gateway's first check of a batch write: the switches as this chunk read them and the
        intent as this step holds it (the write's own transaction reads both again)."""
        assert self.batch is not None
        switches = self.batch.switches
        if not self.batch.switches_read:
            with self.db.connect() as conn:
                switches = controls.engaged_switches(conn)
        return controls.covering(switches, self.wf.name, tool), str(self.intent().state)

    def claim(self) -> None:
        owner = claims.acquire(self.db, self.intent_id, self.run_id, self.lease_s)
        if owner is not None and self._run_ended(owner):
            # The owner's run is over (failed, canceled, or marked failed by the sweeper) but its
            # lease has not run out: its claim is void.
            owner = claims.acquire(self.db, self.intent_id, self.run_id, self.lease_s, dead_owner=owner)
        if owner is not None:
            raise claims.ClaimHeld(self.intent_id, owner)

    def fence(self, conn: Connection, switches: tuple[str, ...] = ()) -> None:
        """claim() on a write's own transaction (ledger.apply_once), without its dead-owner check: a
        refusal rolls the write back, and the caller claims again the long way (write_claimed).
        `switches`: refused too while one is on or the intent is stopped (claims.take)."""
        if (owner := claims.take(conn, self.intent_id, self.run_id, self.lease_s, switches=switches)) is not None:
            raise claims.ClaimHeld(self.intent_id, owner)

    def _run_ended(self, run_id: str) -> bool:
        run = self.ctx.instance.get_run_by_id(run_id)
        return run is None or run.is_finished

    def has_writes(self) -> bool:
        """Whether the intent has ledger rows: as its batch step read them at the start for the chunk
        (once: its own writes come after), else now."""
        if self.batch is not None and (known := self.batch.writes_before.pop(self.intent_id, None)) is not None:
            return known
        return has_writes(self.db, self.intent_id)

    def release(self) -> None:
        self.sink.flush()  # what this run left for the chunk's flush first
        self.db.transaction(lambda conn: claims.release(conn, self.intent_id, self.run_id))

    @property
    def is_recovery(self) -> bool:
        """Launched by the recovery sweeper, or re-executed by an operator (from the UI or the API)."""
        if self.batch is not None and self.batch.recovery:
            return True
        return f"{TAG}/recovery_attempt" in self.ctx.run.tags or self.ctx.run.parent_run_id is not None

    @contextmanager
    def guard(self, step_name: str) -> Iterator[None]:
        """The step's guarantees (_guard), in a span of this intent's trace when OpenTelemetry is on. A
        failure that ends the op (or this intent's part of a batch step) also ends the intent's run."""
        self._guarded = True
        try:
            with otel.step_span(self.otel, step_name, self._span_outcome), self._guard(step_name):
                yield
        except BaseException:
            self.finish_trace()
            raise
        finally:
            if self.batch is None:  # a batch step flushes once for its chunk (Batch.finish)
                otel.flush()

    def _span_outcome(self) -> dict[str, Any]:
        return {"agent_pipelines.state": str(self._intent.state) if self._intent is not None else None}

    def finish_trace(self) -> None:
        """This run is done with the intent (it advanced past hand-off, parked, failed or stopped): the
        root span of its trace. An intent a batch deferred goes on in the solo retry, which ends it."""
        if self.otel is None or not self._guarded or self._trace_finished:
            return
        intent = self._intent
        if (self.batch is not None and self.batch.defer_conflicts and intent is not None
                and intent.state == S.FAILED and (intent.reason or "").startswith(DEFERRED)):
            return
        self._trace_finished = True
        otel.end_intent(self.otel, state=str(intent.state) if intent else None,
                        reason=self.tracer.redact(intent.reason) if intent else None, approval_id=self.approval_id)
        if self.batch is None:
            otel.flush()

    def keeping_claim(self) -> AbstractContextManager[None]:
        """Renew this run's lease in the background for the block: every step's guard, and a step's
        checks that run between its two guards (Great Expectations on a busy worker can outlast a lease;
        the sweeper would then take a live run for a dead one). A batch op renews all its intents'
        leases in one statement instead (claims.heartbeat_many)."""
        return claims.heartbeat(self.db, self.intent_id, self.run_id, 0.0 if self.batch is not None else self.lease_s)

    @contextmanager
    def _guard(self, step_name: str) -> Iterator[None]:
        """Any failure of a step is recorded on the intent with a (redacted) reason before the op fails.
        The original exception is not chained into the Dagster error: its text may hold raw input."""
        self.tracer.step = step_name
        try:
            with self.keeping_claim():
                yield
        except claims.ClaimHeld as exc:
            # A duplicate run (concurrent ticks, a re-launch): it stops and changes nothing.
            self.log(f"{step_name}: {exc}: this run stops here and changes nothing")
        except IntentSettled as exc:
            self.log(f"{step_name}: {exc}")
        except KillSwitchEngaged as exc:
            # Parking is an operator's stop, not a failure: the run ends, the intent resumes on release.
            carry = self.carry.model_dump(mode="json") if self.carry is not None else None
            scope = exc.engaged.key
            self.db.transaction(lambda conn: controls.park(
                conn, intent_id=self.intent_id, workflow=self.wf.name, scope=scope, step=step_name,
                run_id=self.run_id, approval_id=self.approval_id, carry=carry))
            if self.intent().state != S.PARKED:
                self.park(S.PARKED, f"{step_name}: {exc}")
        except BudgetExceeded as exc:
            self.sink.flush()  # the usage is counted from the trace tables
            usage = self.budget.usage()
            self.tracer.note("quarantine", {"budget": exc.budget, "limit": exc.limit, "observed": exc.observed,
                                            "detail": exc.detail, "usage": usage, "step": step_name})
            reason = f"{step_name}: {exc}; run usage {usage}"
            self.park(S.QUARANTINED, reason)
            self.db.transaction(lambda conn: approvals.escalate(
                conn, "budget_exceeded", f"{self.intent_id}:{self.run_id}", self.intent_id, redact_text(reason)))
            raise dg.Failure(f"{step_name}: quarantined: {exc}", allow_retries=False,
                             metadata={"intent_id": self.intent_id, "usage": self.md(usage)}) from None
        except StepFailed as exc:
            self.park(exc.state, exc.reason)
            raise dg.Failure(redact_text(f"{step_name}: {exc.reason}"), metadata={"intent_id": self.intent_id},
                             allow_retries=False) from None
        except dg.Failure:
            raise
        except Exception as exc:
            reason = redact_text(f"{step_name} failed: {type(exc).__name__}: {exc}")[:2000]
            try:
                self.park(S.FAILED, reason)
            except claims.ClaimHeld as held:
                self.log(f"{step_name}: {held}: the failure is not recorded by this run")
                return
            except Exception as record_exc:  # noqa: BLE001 - the database itself is failing
                # The intent keeps its state and this run's claim; when the lease runs out the recovery
                # sweeper resumes it and records why.
                reason += (f"; the failure could not be recorded ({type(record_exc).__name__}): the recovery "
                           f"sweeper resumes the intent once this run's lease expires")
            raise dg.Failure(reason, metadata={"intent_id": self.intent_id}, allow_retries=False) from None


def check_preconditions(wf: Workflow, run: StepRun, carry: Carry) -> None:
    """Before the first write, re-read and compare what the proposal relied on. Once writes exist
    (a re-execution after a crash), the ledger and each write tool's own checks take over: our own
    first writes legitimately changed those records."""
    if run.has_writes():
        return
    expected = wf.preconditions(carry.context, carry.proposal)
    if not expected:
        return
    with run.gateway.snapshot():
        fresh = wf.preconditions(wf.read(run.step(), carry.intake), carry.proposal)
    changed = {k: {"read": v, "now": fresh.get(k)} for k, v in expected.items() if fresh.get(k) != v}
    if changed and has_writes(run.db, carry.intent_id):
        # Another run of this same intent started writing meanwhile: the change is our own, and each
        # write below resolves to that run's ledger row.
        run.tracer.note("precondition_changed_by_same_intent", {"changed": changed})
        return
    if changed and run.batch is not None and run.batch.defer_conflicts:
        run.tracer.note("precondition_deferred", {"changed": changed})
        raise StepFailed(S.FAILED, f"{DEFERRED}: records changed since they were read (by another intent of "
                                   f"this batch, or meanwhile), nothing written: {changed}")
    if changed:
        run.tracer.note("precondition_failed", {"changed": changed})
        raise StepFailed(S.NEEDS_ATTENTION, f"records changed since they were read, nothing written: {changed}")


def carry_from_json(wf: Workflow, data: dict[str, Any]) -> Carry:
    """A Carry stored as JSON (a parked commit), typed back with the workflow's models."""
    return Carry(intent_id=data["intent_id"], intake=wf.intake_model.model_validate(data["intake"]),
                 context=wf.context_model.model_validate(data["context"]),
                 proposal=wf.proposal_model.model_validate(data["proposal"]),
                 decision=PolicyDecision.model_validate(data["decision"]) if data.get("decision") else None,
                 facts=data.get("facts") or {}, approval_id=data.get("approval_id"),
                 plan=tuple(WriteAction.model_validate(w) for w in data["plan"]) if data.get("plan") else None)


def model_messages(wf: Workflow, intake: BaseModel, context: BaseModel) -> list[dict[str, str]]:
    """What the model sees: the workflow's messages, redacted first when the policy says so."""
    messages = wf.messages(intake, context)
    if not wf.policy.data_handling.redact_for_model:
        return messages
    return [{**m, "content": redact_text(m["content"])} for m in messages]


def release_parked(db: Database, intent_id: str) -> None:
    with db.begin() as conn:
        conn.execute(update(parked_intents).where(parked_intents.c.intent_id == intent_id,
                                                  parked_intents.c.released_at.is_(None))
                     .values(released_at=utcnow()))


def parked_continuation(db: Database, intent_id: str) -> str | None:
    """The approval whose continuation run was parked for this intent (None: it parked in the main job)."""
    with db.connect() as conn:
        return conn.execute(select(parked_intents.c.approval_id).where(parked_intents.c.intent_id == intent_id)
                            .order_by(parked_intents.c.id.desc()).limit(1)).scalar()
