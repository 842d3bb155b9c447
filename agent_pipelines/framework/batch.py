"""The batch job of a workflow: one run takes many intents through the same steps as the per-intent job
(agent_steps.py), with every per-intent guarantee unchanged (claim, state, ledger, trace, policy
decision, approval request) and the costs that were per run paid per batch.

- The intents are split into chunks (`chunk_size`); each chunk is a mapped chain of ops, so with the
  Celery executor the chunks' steps run on whichever workers take them (executors.py).
- Within a step, intents go one by one (proposals: twice `llm_concurrency` at once, with at most
  `llm_concurrency` model calls in flight), each inside its own guard: one intent's failure is recorded
  on that intent and the others go on.
- Great Expectations runs once per suite per chunk, over a frame of all the chunk's rows
  (quality.evaluate), and each intent gets the result of its own rows.
- Dagster events are per step and per chunk: counts, plus one materialization per table written and
  one check evaluation per suite, each naming its intents. The per-intent detail is in the trace tables;
  each intent's transitions name the batch run.
- Re-execution from failure re-runs the failed step with the chunk its parent stored: intents already
  settled, or already moved past that step, are passed over (BatchScope.expect)."""

import gc
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import dagster as dg
from sqlalchemy import func, select

from agent_pipelines.framework import agent_steps as steps
from agent_pipelines.framework import budgets, claims, controls, ledger, otel, provenance, quality
from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.intents import Intent, Move, transition_many
from agent_pipelines.framework.executors import batch_executor
from agent_pipelines.framework.llm import Proposer
from agent_pipelines.framework.rowbuffer import RowBuffer
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.steps import DEFERRED, TAG, BatchScope, Carry, StepRun
from agent_pipelines.framework.tables import intents
from agent_pipelines.framework.workflow import Validation, Verification, Workflow

T = TypeVar("T")
ALL = frozenset(S)
# The states an intent may be in when a batch step takes it; anything else was moved on (or parked)
# by an earlier attempt of this batch, and the step passes it over.
EXPECT: dict[str, frozenset[S]] = {
    "read": ALL,  # read decides for itself (agent_steps.not_startable)
    "propose": frozenset({S.RUNNING}), "validate": frozenset({S.RUNNING}), "approve_gate": frozenset({S.RUNNING}),
    "commit": frozenset({S.RUNNING, S.COMMITTING}), "verify": frozenset({S.COMMITTING, S.VERIFYING}),
    "hand_off": frozenset({S.VERIFYING}),
    "retry": ALL,  # the solo retry takes each deferred intent through every step itself
}


_FROZEN = threading.Event()
FULL_COLLECTION_EVERY = 100  # middle-generation passes per full one (Python's default: 10)


def freeze_startup_heap() -> None:
    """Once per process, at the first approve-gate step (validate has imported Great Expectations by
    then): move every object alive now (Dagster, this code location, GE, pandas: ~460,000 objects that
    live as long as the process) out of the garbage collector's reach. Otherwise each full collection
    walks them all again, ~10 % of a batch's time (`gc.freeze`, documented for this). Only what is alive
    at that one moment is kept for good, so memory does not grow with the number of runs or intents.

    Full collections also come ten times rarer than Python's default (one per 100 collections of
    the middle generation, not 10): a batch step keeps its chunk's intents alive, and every full pass
    walked them all again for the little cyclic garbage a chunk leaves (~30,000 objects a 500-intent
    run, mostly Dagster's per-connection SQLite engines; the StepRuns no longer are: steps.weakly). Measured
    alternately in one process, N=8,000: collector time 0.98 -> 0.37 ms an intent; that garbage
    waits about one run longer."""
    if not _FROZEN.is_set():
        _FROZEN.set()
        gc.collect()  # what is already garbage is freed, not kept
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


class BatchConfig(dg.Config):
    intent_ids: list[str]
    # Intents per chunk: each chunk is one chain of step runs (on Celery, one task per step), so a
    # smaller chunk spreads a batch over more workers, a larger one costs fewer Dagster events.
    chunk_size: int = 500


def batch_run_config(wf: Workflow, intent_ids: Sequence[str], chunk_size: int = 500) -> dict[str, Any]:
    return {"ops": {f"{wf.name}__batch_plan": {"config": {"intent_ids": list(intent_ids), "chunk_size": chunk_size}}}}


class Batch:
    """One batch op's pass over its chunk: a StepRun per intent sharing a BatchScope, the leases of all
    the chunk's intents renewed together, failures counted instead of raised."""

    def __init__(self, wf: Workflow, context: dg.OpExecutionContext, runtime: AgentRuntime, step: str) -> None:
        self.wf, self.ctx, self.runtime, self.step = wf, context, runtime, step
        started = context.instance.get_run_stats(context.run_id).start_time or time.time()
        self.scope = BatchScope(step=step, started_at=started, expect=EXPECT[step], rows=RowBuffer(runtime.db))
        self.outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._traced: dict[str, StepRun] = {}  # each intent's latest StepRun, when OpenTelemetry is on

    def run_for(self, intent_id: str, carry: Carry | None = None) -> StepRun:
        run = StepRun(self.wf, self.ctx, self.runtime, intent_id, approval_id=carry.approval_id if carry else None,
                      carry=carry.model_copy(update={"receipts": ()}) if carry else None, batch=self.scope)
        if run.otel is not None:
            self._traced[intent_id] = run
        return run

    def end_trace(self, intent_id: str, result: Any) -> None:
        """The run is done with this intent when its step gave nothing to go on with, or after hand-off."""
        run = self._traced.get(intent_id)
        if run is not None and (result is None or self.step in ("hand_off", "retry")):
            run.finish_trace()

    def each(self, items: Sequence[T], intent_of: Callable[[T], str], fn: Callable[[T], Any],
             threads: int = 1) -> list[Any]:
        """`fn` for every item (None where it raised dg.Failure: the guard recorded it on the intent)."""
        def one(item: T) -> Any:
            try:
                result = fn(item)
            except dg.Failure:  # the step's guard recorded it (and ended the intent's trace)
                with self._lock:
                    self.outcomes["failed"] += 1
                return None
            self.end_trace(intent_of(item), result)
            return result

        ids = [intent_of(i) for i in items]
        self._read_chunk(ids)
        if self.step == "commit" and self.scope.engaged is None:
            self._start_commit()
        with claims.heartbeat_many(self.runtime.db, ids, self.ctx.run_id, self.runtime.lease_seconds):
            if threads <= 1 or len(items) <= 1:
                return [one(i) for i in items]
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"{self.step}-") as pool:
                return list(pool.map(one, items))

    def _read_chunk(self, ids: list[str]) -> None:
        """Once per chunk and step: claim (read) or renew, and read the intents this run owns, and the
        kill switches."""
        db, run_id = self.runtime.db, self.ctx.run_id
        if self.step == "read" and ids:
            # The intents a trigger's run may start, claimed together; any other goes the one-by-one
            # way (a dead owner's claim, a recovery start: StepRun.claim).
            claims.acquire_many(db, ids, run_id, self.runtime.lease_seconds, steps.TRIGGER_START)
        elif self.step != "retry" and ids:
            claims.renew_many(db, ids, run_id, self.runtime.lease_seconds)
        if self.step != "retry" and ids:
            owned: dict[str, Intent] = {}
            with db.connect() as conn:
                for start in range(0, len(ids), 500):
                    rows = conn.execute(select(intents).where(intents.c.intent_id.in_(ids[start:start + 500]),
                                                              intents.c.owner_run_id == run_id,
                                                              intents.c.lease_expires_at > utcnow())).mappings()
                    owned.update({r["intent_id"]: Intent.model_validate(dict(r)) for r in rows})
            self.scope.owned = owned
            self.scope.budget_bases = budgets.load_bases(db, run_id, list(owned))
            if self.step == "propose":
                self.scope.spent = budgets.load_spent(db, run_id, list(owned))
            with db.connect() as conn:
                if self.step in ("validate", "commit") and self.wf.policy.provenance:
                    self.scope.sources = provenance.load_sources_many(conn, {i: o.intake for i, o in owned.items()})
                if self.step == "commit":
                    written = ledger.with_writes(conn, list(owned))
                    self.scope.writes_before = {i: i in written for i in owned}
        with db.connect() as conn:
            self.scope.switches = controls.engaged_switches(conn)
        self.scope.engaged = controls.covering(self.scope.switches, self.wf.name)
        self.scope.switches_read = True

    def _start_commit(self) -> None:
        """The commit step's intents still running move to committing together, in one transaction
        before any of them writes: as durable as each intent's own move, without a transaction each
        (agent_steps.commit finds it there). One that moved meanwhile is left to its own move, which
        says why. Not under a kill switch: then each intent parks from where it is."""
        owned, run_id = self.scope.owned, self.ctx.run_id
        moves = [Move(i, S.COMMITTING, None, run_id) for i in owned.values() if i.state == S.RUNNING]
        if moves:
            moved, _ = self.runtime.db.transaction(lambda conn: transition_many(conn, moves))
            owned.update(moved)

    def finish(self, inputs: int, advanced: list[steps.Advance | None]) -> Iterator[dg.Output]:
        """Log this step's collected events once, and hand on the intents that advanced."""
        carries = [a.carry for a in advanced if a is not None]
        # Every intent's bookkeeping rows, in one transaction, before the next step may read them.
        assert self.scope.rows is not None
        self.scope.rows.flush()
        self._log_events()
        otel.flush()
        self.outcomes["advanced"] = len(carries)
        self.outcomes["stopped"] = inputs - len(carries) - self.outcomes["failed"]
        yield dg.Output(carries, metadata={"intents": inputs, **{k: int(v) for k, v in self.outcomes.items()},
                                           "advanced_ids": dg.MetadataValue.json([c.intent_id for c in carries])})

    def _log_events(self) -> None:
        by_table: dict[str, list[Any]] = defaultdict(list)
        for intent_id, receipt in self.scope.writes:
            by_table[receipt.table].append((intent_id, receipt))
        for table, rows in by_table.items():
            self.ctx.log_event(dg.AssetMaterialization(
                asset_key=dg.AssetKey(["sor", table]), description=f"{len(rows)} write(s) by a batch {self.step}",
                metadata={"writes": len(rows), "intent_ids": dg.MetadataValue.json(sorted({i for i, _ in rows})),
                          "statuses": dg.MetadataValue.json(dict(Counter(str(r.status) for _, r in rows)))}))
        by_suite: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for intent_id, s in self.scope.suites:
            by_suite[(s.asset, s.suite)].append((intent_id, s))
        for (asset, suite), results in by_suite.items():
            failed = sorted(i for i, s in results if not s.passed)
            self.ctx.log_event(dg.AssetCheckEvaluation(
                asset_key=dg.AssetKey(asset.split("/")), check_name=suite.replace(".", "__"), passed=not failed,
                metadata={"intents": len(results), "failed_intents": dg.MetadataValue.json(failed),
                          "evaluated": results[0][1].evaluated}))
        if self.scope.requests:
            self.ctx.log_event(dg.AssetObservation(asset_key=dg.AssetKey(["approvals", "pending_queue"]), metadata={
                "requested": len(self.scope.requests),
                "approval_ids": dg.MetadataValue.json([r["approval_id"] for r in self.scope.requests])}))
        self.scope.writes.clear()
        self.scope.suites.clear()
        self.scope.requests.clear()


def _two_phase(batch: Batch, chunk: list[Carry],
               first: Callable[[StepRun, Carry], Any], then: Callable[[StepRun, Carry, Any], Any]) -> list[Any]:
    """validate/verify: the workflow's rules for every intent, the chunk's checks in one validation per
    suite, then each intent's decision with its own results."""
    runs = {c.intent_id: batch.run_for(c.intent_id, c) for c in chunk}
    ruled = batch.each(chunk, lambda c: c.intent_id, lambda c: first(runs[c.intent_id], c))
    pending = [(c, r) for c, r in zip(chunk, ruled, strict=True) if isinstance(r, (Validation, Verification))]
    results = quality.evaluate([(c.intent_id, check) for c, r in pending for check in r.checks])
    with_suites = {c.intent_id: r.model_copy(update={"suites": r.suites + tuple(results.get(c.intent_id, ()))})
                   for c, r in pending}
    decided = batch.each([c for c, _ in pending], lambda c: c.intent_id,
                         lambda c: then(runs[c.intent_id], c, with_suites[c.intent_id]))
    by_id = {c.intent_id: d for (c, _), d in zip(pending, decided, strict=True)}
    return [r if isinstance(r, steps.Advance) or r is None else by_id[c.intent_id] for c, r in zip(chunk, ruled, strict=True)]


def held_back(wf: Workflow, runtime: AgentRuntime, ids: list[str]) -> list[str]:
    """Intents that depend on an earlier intent of the batch (Workflow.batch_key): they run alone, in
    order, after the batch. An intake that does not parse has no key (its read step rejects it)."""
    seen: set[str] = set()
    later: list[str] = []
    with runtime.db.connect() as conn:
        rows: dict[str, Any] = {}
        for start in range(0, len(ids), 500):
            rows.update(conn.execute(select(intents.c.intent_id, intents.c.intake).where(
                intents.c.intent_id.in_(ids[start:start + 500]))).all())
    for intent_id in ids:
        try:
            key = wf.batch_key(wf.intake_model.model_validate(rows.get(intent_id)))
        except ValueError:
            key = None
        if key is None:
            continue
        if key in seen:
            later.append(intent_id)
        seen.add(key)
    return later


def deferred_intents(runtime: AgentRuntime, run_id: str, ids: list[str]) -> list[str]:
    """The intents this run deferred at commit (a record changed under them), in batch order."""
    found: set[str] = set()
    with runtime.db.connect() as conn:
        for start in range(0, len(ids), 500):
            found.update(conn.execute(select(intents.c.intent_id).where(
                intents.c.intent_id.in_(ids[start:start + 500]), intents.c.state == S.FAILED,
                intents.c.last_run_id == run_id, intents.c.reason.startswith(DEFERRED))).scalars())
    return [i for i in ids if i in found]


def solo(wf: Workflow, b: Batch, intent_id: str, proposer: Proposer) -> steps.Advance | None:
    """One intent through every step before the next intent starts: no batch-mate can change what it
    read. A step that fails records it on the intent (its guard) and ends the chain."""
    def run(c: Carry | None = None) -> StepRun:
        # Each step reads what the previous ones recorded (its budget counts the run's tool calls).
        assert b.scope.rows is not None
        b.scope.rows.flush(intent_id)
        return b.run_for(intent_id, c)

    try:
        adv = steps.read(wf, run())
        if adv is not None:
            adv = steps.propose(wf, run(adv.carry), adv.carry, proposer)
        if adv is not None:
            ruled = steps.validate_rules(wf, r := run(adv.carry), adv.carry)
            adv = steps.validate_decide(wf, r, adv.carry, steps.with_suites(ruled)) if isinstance(
                ruled, Validation) else ruled
        for step in (steps.approve_gate, steps.commit):
            if adv is not None:
                adv = step(wf, run(adv.carry), adv.carry)
        if adv is not None:
            back = steps.verify_read_back(wf, r := run(adv.carry), adv.carry)
            adv = steps.verify_decide(r, adv.carry, steps.with_suites(back)) if isinstance(back, Verification) else back
        if adv is not None:
            adv = steps.hand_off(run(adv.carry), adv.carry)
    except dg.Failure:
        b.outcomes["failed"] += 1
        return None
    b.end_trace(intent_id, adv)
    return adv


def build_batch_job(wf: Workflow, *, tags: dict[str, str]) -> dg.JobDefinition:
    name = wf.name
    chunk_out = dg.Out(list)

    @dg.op(name=f"{name}__batch_plan", out=dg.DynamicOut(list))
    def plan(context: dg.OpExecutionContext, config: BatchConfig, runtime: AgentRuntime) -> Iterator[dg.DynamicOutput]:
        """Split the batch into chunks (same ids, same chunks: a re-execution maps them the same way);
        intents that depend on an earlier one of the batch wait for the solo retry."""
        ids = list(dict.fromkeys(config.intent_ids))
        later = set(held_back(wf, runtime, ids))
        ids = [i for i in ids if i not in later]
        size = max(1, config.chunk_size)
        context.log.info(f"batch of {len(ids)} intent(s) in {(len(ids) + size - 1) // size} chunk(s); "
                         f"{len(later)} held back for the solo retry (they depend on an earlier one)")
        for n, start in enumerate(range(0, len(ids), size)):
            yield dg.DynamicOutput(ids[start:start + size], mapping_key=f"chunk_{n}")

    @dg.op(name=f"{name}__batch_read", out=chunk_out)
    def read(context: dg.OpExecutionContext, runtime: AgentRuntime, chunk: list) -> Iterator[dg.Output]:
        b = Batch(wf, context, runtime, "read")
        runtime.warm_up()
        yield from b.finish(len(chunk), b.each(chunk, str, lambda i: steps.read(wf, b.run_for(i))))

    @dg.op(name=f"{name}__batch_propose", out=chunk_out)
    def propose(context: dg.OpExecutionContext, runtime: AgentRuntime, chunk: list) -> Iterator[dg.Output]:
        b = Batch(wf, context, runtime, "propose")
        local = threading.local()  # one client per thread: instructor's hooks count one call's attempts

        def proposer() -> Proposer:
            if not hasattr(local, "proposer"):
                local.proposer = runtime.proposer()
            return local.proposer

        # Twice the calls allowed in flight (llm.py holds that bound): while some threads record a
        # proposal, the others' calls keep every slot of the endpoint busy.
        threads = 1 if runtime.proposer().is_offline else 2 * max(1, runtime.llm_concurrency)
        yield from b.finish(len(chunk), b.each(
            chunk, lambda c: c.intent_id,
            lambda c: steps.propose(wf, b.run_for(c.intent_id, c), c, proposer()), threads=threads))

    @dg.op(name=f"{name}__batch_validate", out=chunk_out)
    def validate(context: dg.OpExecutionContext, runtime: AgentRuntime, chunk: list) -> Iterator[dg.Output]:
        b = Batch(wf, context, runtime, "validate")
        yield from b.finish(len(chunk), _two_phase(
            b, chunk, lambda run, c: steps.validate_rules(wf, run, c),
            lambda run, c, v: steps.validate_decide(wf, run, c, v)))

    @dg.op(name=f"{name}__batch_approve_gate", out=chunk_out)
    def approve_gate(context: dg.OpExecutionContext, runtime: AgentRuntime, chunk: list) -> Iterator[dg.Output]:
        b = Batch(wf, context, runtime, "approve_gate")
        freeze_startup_heap()
        yield from b.finish(len(chunk), b.each(
            chunk, lambda c: c.intent_id, lambda c: steps.approve_gate(wf, b.run_for(c.intent_id, c), c)))

    @dg.op(name=f"{name}__batch_commit", out=chunk_out)
    def commit(context: dg.OpExecutionContext, runtime: AgentRuntime, chunk: list) -> Iterator[dg.Output]:
        b = Batch(wf, context, runtime, "commit")
        yield from b.finish(len(chunk), b.each(
            chunk, lambda c: c.intent_id, lambda c: steps.commit(wf, b.run_for(c.intent_id, c), c)))

    @dg.op(name=f"{name}__batch_verify", out=chunk_out)
    def verify(context: dg.OpExecutionContext, runtime: AgentRuntime, chunk: list) -> Iterator[dg.Output]:
        b = Batch(wf, context, runtime, "verify")
        yield from b.finish(len(chunk), _two_phase(
            b, chunk, lambda run, c: steps.verify_read_back(wf, run, c),
            lambda run, c, v: steps.verify_decide(run, c, v)))

    @dg.op(name=f"{name}__batch_hand_off", out=chunk_out)
    def hand_off(context: dg.OpExecutionContext, runtime: AgentRuntime, chunk: list) -> Iterator[dg.Output]:
        b = Batch(wf, context, runtime, "hand_off")
        yield from b.finish(len(chunk), b.each(
            chunk, lambda c: c.intent_id, lambda c: steps.hand_off(b.run_for(c.intent_id, c), c)))

    @dg.op(name=f"{name}__batch_retry", out=chunk_out)
    def retry(context: dg.OpExecutionContext, runtime: AgentRuntime, done: list) -> Iterator[dg.Output]:
        """The intents held back by the plan and those deferred at commit, each alone through every step
        (batch.solo), in batch order."""
        ids = list(dict.fromkeys(context.run_config["ops"][f"{name}__batch_plan"]["config"]["intent_ids"]))
        b = Batch(wf, context, runtime, "retry")
        b.scope.defer_conflicts, b.scope.recovery = False, True
        todo = set(held_back(wf, runtime, ids)) | set(deferred_intents(runtime, context.run_id, ids))
        todo = [i for i in ids if i in todo]
        proposer = runtime.proposer()
        finished = [a for a in (solo(wf, b, i, proposer) for i in todo) if a is not None]
        context.log.info(f"{len(todo)} intent(s) held back or deferred at commit, run alone: {len(finished)} finished")
        yield from b.finish(len(todo), finished)

    @dg.op(name=f"{name}__batch_summary")
    def summary(context: dg.OpExecutionContext, runtime: AgentRuntime, retried: list) -> dg.Output:
        """Where every intent of the batch is now, counted from the intents table."""
        ids = list(dict.fromkeys(context.run_config["ops"][f"{name}__batch_plan"]["config"]["intent_ids"]))
        counts: Counter[str] = Counter()
        with runtime.db.connect() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(select(intents.c.state, func.count()).where(
                    intents.c.intent_id.in_(ids[start:start + 500])).group_by(intents.c.state))
                counts.update({str(state): int(n) for state, n in rows})
        context.log.info(f"batch of {len(ids)} ({len(retried)} finished by a solo retry); states now {dict(counts)}")
        context.add_output_metadata({"intents": len(ids), "finished_by_solo_retry": len(retried),
                                     **{f"state/{k}": v for k, v in sorted(counts.items())}})
        return dg.Output(None)

    @dg.job(name=f"{name}__batch", executor_def=batch_executor(), tags={**tags, f"{TAG}/shape": "batch"},
            description=f"{name} for a batch of intents: the same steps and guarantees as the {name} job, "
                        f"Dagster's costs paid per batch, proposals concurrent.")
    def batch_job() -> None:
        chunks = plan()
        done = chunks.map(read).map(propose).map(validate).map(approve_gate).map(commit).map(verify).map(hand_off)
        summary(retry(done.collect()))

    return batch_job
