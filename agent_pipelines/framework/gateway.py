"""The tool gateway: the only path from a workflow to a system of record.

Every call is checked against the workflow's policy (deny by default), its parameters validated by
the tool's pydantic model and the policy's constraints, charged to the run's budget (loop detection
included), run under a per-tool timeout, retried with capped exponential backoff and jitter when the
error is transient (fail-fast otherwise), and recorded in the trace. Before a write the kill switch
is read; the rollout mode decides whether the write lands (full, or limited for low impact), lands in
the shadow table (shadow), or is only recorded as "would write" (read_only). Writes that land go
through the ledger, so each (intent, action) lands once.

Usable without Dagster: build a ToolRegistry and a PolicyPack, then `ToolGateway.open(...)`. Tools, their
registry and the errors a tool raises are in framework/tools.py."""

import json
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from agent_pipelines.framework import approvals, controls
from agent_pipelines.framework import provenance as prov
from agent_pipelines.framework.budgets import BudgetExceeded, RunBudget, call_digest
from agent_pipelines.framework.claims import ClaimHeld
from agent_pipelines.framework.db import WRITER, Database, utcnow
from agent_pipelines.framework.deadline import WATCHDOG
from agent_pipelines.framework.ledger import (WriteOutcome, WriteReceipt, WriteStatus, apply_all, apply_once,
                                              idempotency_key)
from agent_pipelines.framework.params import MAX_PARAM_DEPTH, MAX_PARAM_NODES, clipped, extra_keys, recordable
from agent_pipelines.framework.policy import Decision, Mode, PolicyDecision, PolicyError, PolicyPack
from agent_pipelines.framework.redaction import redact
from agent_pipelines.framework.safe_data import printable_label as _label, tree_problem
from agent_pipelines.framework.sql import insert_ignore
from agent_pipelines.framework.tables import shadow_writes
from agent_pipelines.framework.tools import (Impact, PermanentToolError, Tool, ToolBlocked, ToolHeld, ToolKind,
                                             ToolRegistry, ToolTimeout, retried)
from agent_pipelines.framework.trace import Emit, Tracer
from agent_pipelines.framework.write_stops import Stopped, stopped_by, why_stopped


T = TypeVar("T")


# A run's claim taken in a write's transaction (StepRun.fence), refused too while one of the kill
# switches given (their keys) is on or the intent is stopped: raises ClaimHeld.
Fence = Callable[[Connection, tuple[str, ...]], None]

# What a write's caller already knows of the switches and the intent's state: (switch on, state).
StopHint = Callable[[str], tuple["controls.Engaged | None", str | None]]


_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tool")


def _bounded(tool: Tool, conn: Connection) -> AbstractContextManager[None]:
    """A local tool's deadline on the connection it runs on (framework/deadline.py)."""
    return WATCHDOG.guard(conn, tool.timeout_s) if tool.local else nullcontext()


_JITTER = random.Random()  # backoff jitter of every gateway not given its own rng (tests give one)
# A forked process (a warm run worker's pool process: deploy/dagster.warm.yaml) reseeds it, as the random
# module does its own: otherwise every pool process would draw the same jitter and retry in step.
os.register_at_fork(after_in_child=_JITTER.seed)


class ToolGateway:
    def __init__(self, registry: ToolRegistry, policy: PolicyPack, db: Database, tracer: Tracer, *,
                 mode: Mode = Mode.FULL, budget: RunBudget | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 fence: Fence | None = None, stop_hint: StopHint | None = None,
                 preloaded_sources: Callable[[], prov.Sources | None] | None = None) -> None:
        self.registry, self.policy, self.db, self.tracer = registry, policy, db, tracer
        self.stop_hint = stop_hint
        self.preloaded_sources = preloaded_sources  # a batch step's read of its chunk's sources (sources())
        # Runs first in each write's ledger transaction and raises to refuse it (ledger.apply_once): a
        # job's claim on the intent (StepRun.fence). An external write's call is outside that
        # transaction (is_external): its caller checks before.
        self.fence = fence
        self.mode = Mode(mode)
        self.budget = budget or RunBudget(db, policy.budgets, tracer.run_id, intent_id=tracer.intent_id,
                                          recorded=tracer.recorded_calls)
        self._sleep = sleep
        self._rng = rng or _JITTER  # seeding a Random per gateway read os.urandom each time
        self._reading: Connection | None = None  # snapshot()
        self._sources_read: prov.Sources | None = None  # sources(): read once, then followed
        self._sources_since: list[Any] = []
        problems = registry.provenance_problems(policy)
        if problems:
            raise PolicyError(f"policy pack {policy.workflow}: " + "; ".join(problems))

    @classmethod
    def open(cls, registry: ToolRegistry, policy: PolicyPack, db: Database, *, intent_id: str | None = None,
             run_id: str | None = None, mode: Mode | None = None, emit: Emit | None = None) -> "ToolGateway":
        """The gateway outside a Dagster job: same allowlist, constraints, budgets, kill switch, modes,
        ledger and trace. `intent_id` keys the writes (required for writes); `run_id` scopes budgets."""
        tracer = Tracer(db, workflow=policy.workflow, intent_id=intent_id, run_id=run_id, emit=emit,
                        redact_fields=policy.data_handling.redact_fields)
        return cls(registry, policy, db, tracer, mode=mode or policy.rollout.mode)

    def is_external(self, name: str) -> bool:
        return self.registry.get(name).external is not None

    def is_high_impact(self, name: str) -> bool:
        return name in self.policy.high_impact_tools or self.registry.get(name).impact == Impact.HIGH

    # -- public API -------------------------------------------------------------------------------
    def read(self, name: str, params: BaseModel | dict[str, Any]) -> Any:
        tool, p, digest = self._admit(name, params, ToolKind.READ)

        def call() -> Any:
            shared = tool.local and self._reading is not None  # inside snapshot()
            with (nullcontext(self._reading) if shared else self.db.connect()) as conn, _bounded(tool, conn):
                return tool.fn(conn, p)

        result = self._run(tool, p, call, digest)
        self._keep_source(tool.name, result, trusted=not tool.untrusted_output)
        return result

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read connection for the local tools read inside the block (a workflow's read or verify):
        on SQLite one transaction, so those reads see one state of the database; on PostgreSQL the
        reader's autocommit session (make_reader). Either way one checkout instead of one a call."""
        if self._reading is not None:
            yield
            return
        with self.db.connect() as conn:
            self._reading = conn
            try:
                yield
            finally:
                self._reading = None

    def trust(self, value: Any, *, source: str) -> None:
        """Declare values trusted for this intent's provenance rules (e.g. the operator's own request,
        authenticated upstream): a rule accepts them if it names `declared:<source>` or no sources."""
        self._keep_source(prov.DECLARED + source, value, trusted=True, always=True)

    def provenance_findings(self, writes: list[tuple[str, BaseModel | dict[str, Any]]]) -> list[prov.ProvenanceFinding]:
        """The provenance rule over planned writes (tool, params), before any of them runs: what VALIDATE
        hands to the policy (`provenance_facts`), the same check the gateway repeats at the write."""
        guarded = [(t, recordable(p)) for t, p in writes if self.policy.provenance.get(t)]
        if not guarded or self.tracer.intent_id is None:
            return []
        sources = self.sources()
        return [f for t, p in guarded if isinstance(p, dict)
                for f in prov.check(t, self.policy.provenance[t], p, sources)]

    def provenance_facts(self, writes: list[tuple[str, BaseModel | dict[str, Any]]]) -> dict[str, Any]:
        """`{"provenance": [finding, ...]}` for a workflow's validate facts; PolicyPack.decide turns each
        finding into a deny or needs_approval with the rule `provenance:<tool>.<param>`."""
        return {prov.PROVENANCE_FACT: [f.model_dump() for f in self.provenance_findings(writes)]}

    def sources(self) -> prov.Sources:
        """What this intent has read so far (a replay's gateway keeps them in memory instead)."""
        # Read once per gateway (one step of one intent, whose run holds the claim: nobody else adds to
        # them), then followed through the sources this gateway keeps, written yet or not (rowbuffer.py).
        if self._sources_read is None:
            self._sources_read = self.preloaded_sources() if self.preloaded_sources is not None else None
            if self._sources_read is None:
                with self.db.connect() as conn:
                    self._sources_read = prov.load_sources(conn, self.tracer.intent_id or "")
            self._sources_since = []
        return prov.extend_sources(self._sources_read, self._sources_since)

    def _keep_source(self, source: str, value: Any, *, trusted: bool, always: bool = False) -> None:
        tr = self.tracer
        # Only packs that guard something pay for the bookkeeping; writes need an intent anyway.
        if tr.intent_id is None or not (self.policy.provenance or always):
            return
        row = prov.source_row(intent_id=tr.intent_id, run_id=tr.run_id, source=source, trusted=trusted,
                              value=recordable(value))
        if row is not None:
            tr.sink.put(prov.SOURCE_ROW, row)
            self._sources_since.append(row["output"])

    def write(self, name: str, params: BaseModel | dict[str, Any], *, action: str,
              approval_id: str | None = None) -> WriteReceipt:
        """Apply a write tool once per (intent, action) through the ledger, within mode and kill switch."""
        if self.mode in (Mode.READ_ONLY, Mode.SHADOW):
            return self.dry_run([(name, params, action)])[0]
        tool, p, digest = self._admit_write(name, params)
        # An approval the pack requires is asked for first; a provenance deny then holds even under one.
        self._approval_gate(tool, p, digest, action, approval_id)
        self._provenance_gate(tool, p, digest, action, approval_id)
        tr = self.tracer
        assert tr.intent_id is not None

        def call() -> WriteReceipt:
            def write(conn: Connection) -> WriteOutcome:
                with _bounded(tool, conn):
                    return tool.fn(conn, p)

            if tool.external is not None:
                return tool.external.apply(self.db, workflow=tr.workflow, intent_id=tr.intent_id or "", action=action,
                                           tool=tool.name, run_id=tr.run_id, params=p, approval_id=approval_id,
                                           note=tr.note)
            return apply_once(self.db, workflow=tr.workflow, intent_id=tr.intent_id, action=action,
                              tool=tool.name, run_id=tr.run_id, write=write, approval_id=approval_id,
                              fence=lambda conn: self._write_fence(conn, [tool.name]))

        try:
            return self._run(tool, p, call, digest)
        except Stopped as stop:  # the write's transaction found a switch on or the intent stopped
            self._record_block(name, p.model_dump(mode="json"), stop.rule, stop.reason, digest)
            raise stop.error from None

    def can_group(self, names: Sequence[str]) -> bool:
        """Whether these writes may go together through `write_all`: every tool known and local (its
        statements run on the connection it is given, so one transaction can hold them all)."""
        return all(n in self.registry and self.registry.get(n).local for n in names)

    def write_all(self, writes: Sequence[tuple[str, BaseModel | dict[str, Any], str]], *,
                  approval_id: str | None = None,
                  before: Callable[[Connection], None] | None = None) -> list[WriteReceipt]:
        """An intent's writes (name, params, action) to our own database (can_group) in one transaction
        with their ledger rows (ledger.apply_all): all land, or none does. Each is admitted and gated as
        by `write` before any runs, and traced as a call of its own. `before` runs in that transaction
        after the fence (the caller's own row that must commit with the writes)."""
        if self.mode in (Mode.READ_ONLY, Mode.SHADOW):
            return self.dry_run(list(writes))
        admitted: list[tuple[Tool, BaseModel, str, str]] = []
        try:
            for name, params, action in writes:
                tool, p, digest = self._admit_write(name, params)
                self._approval_gate(tool, p, digest, action, approval_id)
                self._provenance_gate(tool, p, digest, action, approval_id)
                self.budget.pending[digest] += 1  # the next one's budget check counts it
                admitted.append((tool, p, digest, action))
        finally:
            self.budget.pending.clear()  # a refusal ends the group; else the writes are traced below
        if not admitted:
            return []
        tr = self.tracer
        assert tr.intent_id is not None and all(t.local for t, *_ in admitted)
        # The tool whose statements run now: an error is that call's (one in the fence, the ledger's
        # statements or `before` is the first tool's, whose retry policy then applies).
        running = [admitted[0][0]]

        def bounded(tool: Tool, p: BaseModel) -> Callable[[Connection], WriteOutcome]:
            def write(conn: Connection) -> WriteOutcome:
                running[0] = tool
                with _bounded(tool, conn):
                    return tool.fn(conn, p)
            return write

        def call() -> list[WriteReceipt]:
            return apply_all(self.db, workflow=tr.workflow, intent_id=tr.intent_id or "", run_id=tr.run_id,
                             writes=[(action, tool.name, bounded(tool, p)) for tool, p, _, action in admitted],
                             approval_id=approval_id, before=before,
                             fence=lambda conn: self._write_fence(conn, [t.name for t, *_ in admitted]))

        started = time.perf_counter()
        try:
            receipts, attempts, error = self._retried(call, lambda: running[0])
        except Stopped as stop:  # the transaction found a switch on or the intent stopped: nothing ran
            tool, p, digest, _ = next(a for a in admitted if a[0].name == stop.tool)
            self._record_block(tool.name, p.model_dump(mode="json"), stop.rule, stop.reason, digest)
            raise stop.error from None
        if error is not None:
            tool, p, digest, _ = next(a for a in admitted if a[0] is running[0])
            rolled_back = [t.name for t, *_ in admitted if t is not tool]
            self._trace(tool, p, None, "error", f"{type(error).__name__}: {error}" + (
                f" (rolled back with it, not written: {', '.join(rolled_back)})" if rolled_back else ""),
                attempts, started, digest)
            raise error
        for (tool, p, digest, _), receipt in zip(admitted, receipts, strict=True):
            self._trace(tool, p, receipt, "ok", None, attempts, started, digest)
        return receipts

    def dry_run(self, writes: list[tuple[str, BaseModel | dict[str, Any], str]]) -> list[WriteReceipt]:
        """read_only / shadow: run the writes (name, params, action) together in one transaction that is
        rolled back, so later writes see earlier ones (a payment needs its staged invoice), and keep
        what each would have done: a `shadow_writes` row and a trace entry per write. Nothing lands."""
        tr = self.tracer
        admitted = [(self._admit_write(name, params), action) for name, params, action in writes]
        for (tool, p, digest), action in admitted:  # a denied destination is denied in every mode
            self._provenance_gate(tool, p, digest, action, None, deny_only=True)
        assert tr.intent_id is not None
        outcomes: list[tuple[WriteOutcome, float]] = []
        with self.db.engine.connect() as conn:
            txn = conn.execution_options(**{WRITER: True}).begin()  # it writes, then rolls back
            try:
                for (tool, p, digest), _action in admitted:
                    started = time.perf_counter()
                    try:
                        outcomes.append((tool.fn(conn, p), started))
                    except Exception as exc:
                        txn.rollback()
                        self._trace(tool, p, None, "error", f"{type(exc).__name__}: {exc}", 1, started, digest)
                        raise
            finally:
                if txn.is_active:
                    txn.rollback()
        status = WriteStatus.SHADOW if self.mode == Mode.SHADOW else WriteStatus.WOULD_WRITE
        receipts = []
        for ((tool, p, digest), action), (outcome, started) in zip(admitted, outcomes, strict=True):
            with self.db.begin() as conn:
                insert_ignore(conn, shadow_writes, dict(
                    workflow=tr.workflow, intent_id=tr.intent_id, action=action, mode=str(self.mode),
                    tool=tool.name, target_table=outcome.table, record_key=outcome.key,
                    params=redact(p.model_dump(mode="json")), before=redact(outcome.before),
                    after=redact(outcome.after), run_id=tr.run_id, at=utcnow()),
                    ["workflow", "intent_id", "action", "mode"])
            receipt = WriteReceipt(idempotency_key=idempotency_key(tr.workflow, tr.intent_id, action), action=action,
                                   tool=tool.name, table=outcome.table, key=outcome.key, status=status,
                                   before=outcome.before, after=outcome.after)
            self._trace(tool, p, receipt, str(self.mode), None, 1, started, digest)
            receipts.append(receipt)
        return receipts

    def _admit_write(self, name: str, params: BaseModel | dict[str, Any]) -> tuple[Tool, BaseModel, str]:
        """Everything a write must pass before it may run: policy and params, budget, kill switch, and
        an intent that is not quarantined or parked."""
        tool, p, digest = self._admit(name, params, ToolKind.WRITE)
        tr = self.tracer
        if tr.intent_id is None:
            raise PermanentToolError("writes need an intent (the idempotency key derives from it)")
        # Checked before the approval and provenance gates, so a stopped write is refused as stopped. A
        # write to our database checks again in its own ledger transaction (_write_fence), which is the
        # guarantee: this first check may use what the caller already read (a batch reads the switches
        # per chunk). No transaction of ours holds an external call (nor a dry run): those read now.
        if self.stop_hint is not None and tool.external is None and self.mode not in (Mode.READ_ONLY, Mode.SHADOW):
            stop = stopped_by(*self.stop_hint(tool.name), tr.intent_id, tool.name)
        else:
            with self.db.connect() as conn:
                stop = why_stopped(conn, tr.workflow, tr.intent_id, tool.name)
        if stop is not None:
            self._record_block(name, p.model_dump(mode="json"), stop.rule, stop.reason, digest)
            raise stop.error
        return tool, p, digest

    def _write_fence(self, conn: Connection, tools: Sequence[str]) -> None:
        """First in a write's ledger transaction (ledger.apply_all): a kill switch on, or the intent
        quarantined or parked, refuses the writes atomically with them; so does a claim another run
        holds. With a claim to take (fence), one statement checks all three (claims.take's `switches`);
        only a refusal reads which one it was, a switch or a stopped intent first."""
        workflow, intent_id = self.tracer.workflow, self.tracer.intent_id or ""

        def stopped() -> Stopped | None:
            return next((s for t in tools if (s := why_stopped(conn, workflow, intent_id, t)) is not None), None)

        if self.fence is None:
            if (stop := stopped()) is not None:
                raise stop
            return
        try:
            self.fence(conn, tuple(dict.fromkeys(k for t in tools for k in controls.switch_keys(workflow, t))))
        except ClaimHeld:
            if (stop := stopped()) is not None:
                raise stop from None
            raise

    # -- internals --------------------------------------------------------------------------------
    def _admit(self, name: str, params: BaseModel | dict[str, Any], kind: ToolKind) -> tuple[Tool, BaseModel, str]:
        hostile = tree_problem(params, max_depth=MAX_PARAM_DEPTH, max_nodes=MAX_PARAM_NODES)
        if isinstance(params, BaseModel):
            try:
                raw: Any = params.model_dump(mode="json")
            except Exception as exc:  # noqa: BLE001 - e.g. a value that does not serialise
                raw, hostile = recordable(params), hostile or f"parameters do not serialise: {type(exc).__name__}"
        else:
            raw = params
        shown = recordable(raw)  # what the trace records and the digest hashes, whatever raw holds

        def as_passed() -> str:  # the digest of what was passed: only a refusal before validation needs it
            return call_digest(_label(name), shown if isinstance(shown, dict) else {"value": shown})

        if not isinstance(name, str) or not self.policy.allows_tool(name):
            self._block(name, shown, "tool_not_allowed", f"{name!r} is not in the policy's allowed_tools", as_passed())
        tool = self.registry.get(name)
        if tool.kind != kind:
            self._block(name, shown, "wrong_kind", f"{name!r} is a {tool.kind} tool", as_passed())
        if not isinstance(raw, dict):
            self._block(name, shown, "invalid_params", "parameters must be an object", as_passed())
        if hostile is not None:  # non-string keys, NaN/infinity at any depth, absurd depth or size
            self._block(name, shown, "invalid_params", hostile, as_passed())
        unknown = sorted(set(raw) - set(tool.params.model_fields))
        if unknown:  # an ignored extra key would also dodge loop detection
            self._block(name, shown, "invalid_params", f"unknown parameters {unknown}", as_passed())
        try:
            # Strict JSON validation: no bool-as-number, no "779" for 779; dates as ISO strings.
            p = tool.params.model_validate_json(json.dumps(raw, default=str, allow_nan=False), strict=True)
        except (ValidationError, ValueError, TypeError, RecursionError) as exc:
            self._block(name, shown, "invalid_params", str(exc), as_passed())
            raise AssertionError("unreachable") from None
        extra = extra_keys(raw, p, "$")
        if extra:  # nested models ignore unknown keys by default: refuse them here
            self._block(name, shown, "invalid_params", f"unknown nested parameters {extra}", as_passed())
        validated = p.model_dump(mode="json")
        # The pack's checks first, then control characters no constraint allows (CR/LF, NUL, ...).
        violations = self.policy.param_violations(name, validated) + self.policy.control_violations(name, validated)
        if violations:
            self._block(name, shown, "param_constraint", "; ".join(violations), as_passed())
        digest = call_digest(name, validated)  # loop detection compares what would really run
        try:
            self.budget.check_tool_call(name, digest)
        except BudgetExceeded as exc:
            self._record_block(name, shown, f"budget:{exc.budget}", str(exc), digest)
            raise
        return tool, p, digest

    def _approval_gate(self, tool: Tool, p: BaseModel, digest: str, action: str, approval_id: str | None) -> None:
        """Tools the pack reserves for approved changes (and, in limited mode, every high-impact tool)
        run only under an approval that is approved, for this intent, and lists exactly this write."""
        needs = tool.name in self.policy.approval.required_for_tools or (
            self.mode == Mode.LIMITED and self.is_high_impact(tool.name))
        if not needs:
            return
        params = p.model_dump(mode="json")
        why = "limited mode holds high-impact writes" if tool.name not in self.policy.approval.required_for_tools \
            else "the policy reserves it for approved changes"
        if approval_id is None:
            self._block(tool.name, params, "approval_required", f"{tool.name!r} needs an approval ({why})", digest,
                        exc=ToolHeld)
        problem = self._approval_problem(tool, params, action, approval_id)
        if problem:
            self._block(tool.name, params, "approval_invalid", f"approval {approval_id!r} does not cover this "
                        f"write: {problem}", digest, exc=ToolHeld)

    def _approval_problem(self, tool: Tool, params: dict[str, Any], action: str, approval_id: str) -> str | None:
        """Why `approval_id` does not cover exactly this write (None: it does)."""
        with self.db.connect() as conn:
            approved, problem = approvals.approved_write(conn, approval_id, intent_id=self.tracer.intent_id or "",
                                                         action=action, tool=tool.name)
        if approved is not None and tool.params.model_validate(approved).model_dump(mode="json") != params:
            problem = "the parameters differ from the approved ones"
        return problem

    def _provenance_gate(self, tool: Tool, p: BaseModel, digest: str, action: str, approval_id: str | None,
                         *, deny_only: bool = False) -> None:
        """The pack's provenance rules on this write: a guarded value no trusted source of the intent
        vouches for is denied (`otherwise: deny`), or runs only under an approval that lists exactly this
        write (`otherwise: approval`). Each outcome is a recorded decision with its rule."""
        rules = self.policy.provenance.get(tool.name)
        if not rules or self.tracer.intent_id is None:
            return
        params = p.model_dump(mode="json")
        sources = self.sources()
        findings = prov.check(tool.name, rules, params, sources)
        denied = [f for f in findings if f.otherwise == "deny"]
        if not findings or (deny_only and not denied):
            return
        first = (denied or findings)[0]
        reason = "; ".join(f.reason for f in (denied or findings))
        observed = {"params": params, "provenance": [f.model_dump() for f in findings]}
        if denied:
            self._block(tool.name, params, first.rule, reason, digest, observed=observed)
        if approval_id is None:
            self._block(tool.name, params, first.rule, f"needs an approval: {reason}", digest, exc=ToolHeld,
                        decision=Decision.NEEDS_APPROVAL, observed=observed)
        problem = self._approval_problem(tool, params, action, approval_id)
        if problem:
            self._block(tool.name, params, first.rule, f"approval {approval_id!r} does not cover this write: "
                        f"{problem}; {reason}", digest, exc=ToolHeld, observed=observed)
        self.tracer.policy(tool.name, PolicyDecision(
            decision=Decision.ALLOW, rule=first.rule, reasons=(f"approved in {approval_id}: {reason}",),
            observed=observed, policy_digest=self.policy.digest))

    def _record_block(self, name: Any, raw: Any, rule: str, reason: str, digest: str,
                      decision: Decision = Decision.DENY, observed: dict[str, Any] | None = None) -> None:
        label = _label(name)
        raw = clipped(raw)  # a refused call is recorded, not kept whole: 600 KB of hostile text stays out
        recorded = PolicyDecision(decision=decision, rule=rule, reasons=(reason,),
                                  observed=observed or {"params": raw}, policy_digest=self.policy.digest)
        self.tracer.policy(label, recorded)
        self.tracer.tool_call(tool=label, kind="?", impact="?", params=raw, result=None, status="blocked",
                              error=reason, attempts=0, latency_ms=0.0, call_digest=digest)

    def _block(self, name: Any, raw: Any, rule: str, reason: str, digest: str,
               exc: type[ToolBlocked] = ToolBlocked, decision: Decision = Decision.DENY,
               observed: dict[str, Any] | None = None) -> None:
        self._record_block(name, raw, rule, reason, digest, decision, observed)
        raise exc(f"{_label(name)}: {reason}")

    def _run(self, tool: Tool, params: BaseModel, call: Callable[[], Any], digest: str, status: str = "ok") -> Any:
        def attempt() -> Any:
            # A local tool runs here, bounded by its connection's deadline (_bounded); any other in a
            # pool thread, waited on for timeout_s (left running, its late result ignored).
            if tool.local:
                return call()
            try:
                return _POOL.submit(call).result(timeout=tool.timeout_s)
            except FutureTimeout:
                raise ToolTimeout(f"{tool.name} timed out after {tool.timeout_s}s") from None

        started = time.perf_counter()
        result, attempts, error = self._retried(attempt, lambda: tool)
        if error is not None:
            self._trace(tool, params, None, "error", f"{type(error).__name__}: {error}", attempts, started, digest)
            raise error
        self._trace(tool, params, result, status, None, attempts, started, digest)
        return result

    def _retried(self, call: Callable[[], T], culprit: Callable[[], Tool]) -> tuple[T | None, int, BaseException | None]:
        # A fence's refusal (nothing changed) is never retried.
        return retried(call, culprit, sleep=self._sleep, rng=self._rng, final=(ClaimHeld, Stopped))

    def _trace(self, tool: Tool, params: BaseModel, result: Any, status: str, error: str | None,
               attempts: int, started: float, digest: str) -> None:
        self.tracer.tool_call(tool=tool.name, kind=tool.kind, impact="high" if self.is_high_impact(tool.name) else "low",
                              params=params.model_dump(mode="json"), result=result, status=status, error=error,
                              attempts=attempts, latency_ms=(time.perf_counter() - started) * 1000,
                              call_digest=digest)
