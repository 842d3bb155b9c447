"""Replay: re-run an intent's decision from its recording, in a sandbox.

What is replayed is the run that took the intent through READ last (run_record.py): the workflow's own
step code runs again (read -> propose -> validate with its suites -> the policy decision -> the approval
gate -> the planned writes), through the same functions the jobs use (agent_steps.ask, rule_on, gate),
under the recorded mode, and optionally under another policy pack or a live model. The sandbox:

- read tools answer from the recording: the result the read step recorded for the same call (same
  call digest, computed over the real parameters); a call the recording does not hold is reported as
  an error of the replay (UnrecordedCall), never read live;
- the model answers with the recorded proposal (llm_calls.output), or live with `llm`;
- planned writes pass the gateway's pre-write checks (allowlist, parameters, constraints, approval and
  provenance gates) and are never executed; nothing is written to any table (the tracer keeps its
  events in memory, provenance sources too).

The recording is redacted like the trace: a read result's secrets, PII and the pack's redact_fields are
masked (`[REDACTED:…]`). The replay uses the masked values, so a decision that depends on one (it never
does in the shipped workflows: amounts, statuses, ids and versions are not masked) would not reproduce,
and the replay says so rather than reading the real value live. The intake is the intent's own (stored as
received); its digest must match the run's, else the run saw another intake (an answered question) and
only the intent's latest run can be replayed."""

import functools
import time
import typing
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter
from sqlalchemy import Connection, func, select

from agent_pipelines.framework import agent_steps, run_record
from agent_pipelines.framework import provenance as prov
from agent_pipelines.framework.budgets import BudgetExceeded, RunBudget
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.tools import Tool, ToolBlocked, ToolKind
from agent_pipelines.framework.intents import Intent, IntentStore
from agent_pipelines.framework.llm import LLMConfig, ProposalFailed, Proposer
from agent_pipelines.framework.params import recordable
from agent_pipelines.framework.policy import Mode, PolicyPack, writes_land
from agent_pipelines.framework.run_record import PlannedWrite
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.steps import Carry
from agent_pipelines.framework.tables import (
    intent_runs,
    intent_transitions,
    intents,
    llm_calls,
    tool_calls,
)
from agent_pipelines.framework.trace import Tracer
from agent_pipelines.framework.workflow import Step, Workflow, WriteAction

REPLAYED_STEPS = ("read", "validate")  # the steps whose recorded reads a replay answers from


class ReplayError(Exception):
    """The replay could not be made (no recording, another intake); reported, never a live read."""


class UnrecordedCall(ReplayError):
    """The replayed step made a read the recording does not hold."""


class Outcome(BaseModel):
    """Where one run took (or a replay would take) an intent: compared field by field by the diff."""

    model_config = ConfigDict(frozen=True)
    state: str | None
    decision: str | None = None
    rule: str | None = None
    writes: tuple[PlannedWrite, ...] = ()
    reason: str | None = None  # shown, not compared: it quotes ids (a question's id) and inputs
    error: str | None = None  # the replay could not be made

    def key(self) -> tuple[Any, ...]:
        return self.state, self.decision, self.rule, self.writes


class Recording(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    intent: Intent
    run: dict[str, Any]  # the intent_runs row
    reads: dict[str, Any]  # call digest -> the recorded result
    proposal: dict[str, Any] | None
    outcome: Outcome


class Replayed(BaseModel):
    intent_id: str
    workflow: str
    run_id: str | None
    recorded: Outcome
    replayed: Outcome

    @property
    def reproduced(self) -> bool:
        return self.replayed.error is None and self.recorded.key() == self.replayed.key()


# -- the recording ----------------------------------------------------------------------------------------
def select_runs(conn: Connection, *, intent_id: str | None = None, run_id: str | None = None,
                workflow: str | None = None) -> list[tuple[str, str]]:
    """(intent_id, run_id) to replay: the runs of `run_id`, else each intent's latest recorded run."""
    r = intent_runs.c
    if run_id is not None:
        rows = conn.execute(select(r.intent_id, r.run_id).where(r.run_id == run_id).order_by(r.id)).all()
        return [(i, run) for i, run in rows if intent_id is None or i == intent_id]
    latest = select(func.max(r.id)).group_by(r.intent_id)
    stmt = select(r.intent_id, r.run_id).where(r.id.in_(latest)).order_by(r.id)
    if intent_id is not None:
        stmt = stmt.where(r.intent_id == intent_id)
    if workflow is not None:
        stmt = stmt.where(r.workflow == workflow)
    return [(i, run) for i, run in conn.execute(stmt).all()]


def unrecorded_intents(conn: Connection, workflow: str | None = None) -> list[dict[str, Any]]:
    """Intents with no recorded run: decided by their trigger (rejected at intake: no step ran), or run
    before the recording existed. There is nothing of theirs to replay."""
    c = intents.c
    stmt = select(c.intent_id, c.workflow, c.state, c.last_run_id).where(
        c.intent_id.not_in(select(intent_runs.c.intent_id))).order_by(c.created_at, c.intent_id)
    if workflow is not None:
        stmt = stmt.where(c.workflow == workflow)
    return [{"intent_id": i, "workflow": w, "state": s,
             "why": "decided at intake: no run" if last is None else "no recording of its run"}
            for i, w, s, last in conn.execute(stmt).all()]


def load(db: Database, intent_id: str, run_id: str, prompt_version: str | None = None) -> Recording:
    intent = IntentStore(db).get(intent_id)
    with db.connect() as conn:
        run = conn.execute(select(intent_runs).where(intent_runs.c.intent_id == intent_id,
                                                     intent_runs.c.run_id == run_id)).mappings().first()
        if run is None:
            raise ReplayError(f"no recording of intent {intent_id} in run {run_id}")
        t = tool_calls.c
        reads: dict[str, Any] = {}
        mine: dict[str, Any] = {}
        # The run's own read results; a read it reused from an earlier run (a resumed intent) from that run.
        for digest, result, by in conn.execute(select(t.call_digest, t.result, t.run_id).where(
                t.intent_id == intent_id, t.kind == ToolKind.READ, t.status == "ok",
                t.step.in_(REPLAYED_STEPS)).order_by(t.id)):
            (mine if by == run_id else reads)[digest] = result
        reads.update(mine)
        calls = select(llm_calls.c.output, llm_calls.c.run_id).where(
            llm_calls.c.intent_id == intent_id).order_by(llm_calls.c.id)
        if prompt_version is not None:
            calls = calls.where(llm_calls.c.prompt_version == prompt_version)
        # A failed call's output is JSON null (not SQL NULL): only proposals count.
        proposals = [(o, by) for o, by in conn.execute(calls).all() if o is not None]
        proposal = next((o for o, by in reversed(proposals) if by == run_id), proposals[-1][0] if proposals else None)
        last = conn.execute(select(intent_transitions.c.to_state, intent_transitions.c.reason).where(
            intent_transitions.c.intent_id == intent_id, intent_transitions.c.run_id == run_id)
            .order_by(intent_transitions.c.id.desc()).limit(1)).first()
    outcome = Outcome(state=last[0] if last else None, reason=last[1] if last else None,
                      decision=run["decision"], rule=run["rule"],
                      writes=tuple(PlannedWrite.model_validate(w) for w in run["planned_writes"] or ()))
    return Recording(intent=intent, run=dict(run), reads=reads, proposal=proposal, outcome=outcome)


# -- the sandbox -----------------------------------------------------------------------------------------
class MemoryTracer(Tracer):
    """The trace of a replay: redacted events in memory, no row in any table."""

    def _record(self, kind: str, table: Any, row: dict[str, Any], own: dict[str, Any] | None = None) -> None:
        self.events.append({"kind": kind, **self.redact(row), **(own or {})})


class ReplayGateway(ToolGateway):
    """The workflow's gateway (same allowlist, parameter checks, constraints, budgets, provenance) whose
    reads answer from the recording and which runs no write."""

    def __init__(self, wf: Workflow, db: Database, tracer: Tracer, *, mode: Mode, reads: dict[str, Any],
                 intake: Any) -> None:
        self._reads, self._intake = reads, intake
        self._kept: list[dict[str, Any]] = []  # provenance rows (source_record), never stored
        budget = RunBudget(db, wf.policy.budgets, tracer.run_id, intent_id=tracer.intent_id,
                           recorded=tracer.recorded_calls)
        super().__init__(wf.registry, wf.policy, db, tracer, mode=mode, budget=budget)

    def _run(self, tool: Tool, params: BaseModel, call: Any, digest: str, status: str = "ok") -> Any:
        if tool.kind != ToolKind.READ:
            raise ReplayError(f"{tool.name}: a replay executes no write")
        if digest not in self._reads:
            raise UnrecordedCall(f"{tool.name}({params.model_dump(mode='json')}) is not in the recording; "
                                 f"a replay makes no live read")
        result = _result_type(tool).validate_python(self._reads[digest])
        self._trace(tool, params, result, "replayed", None, 1, time.perf_counter(), digest)
        return result

    def _keep_source(self, source: str, value: Any, *, trusted: bool, always: bool = False) -> None:
        rec = prov.source_record(self.tracer.intent_id or "", source, trusted, recordable(value))
        if rec is not None:
            self._kept.append(rec[1])

    def sources(self) -> prov.Sources:
        return prov.sources_from(self.tracer.intent_id or "", self._kept, self._intake)

    def check_write(self, a: WriteAction) -> None:
        """What a write must pass before it runs (ToolBlocked if it would not), without running it."""
        tool, p, digest = self._admit(a.tool, a.params, ToolKind.WRITE)
        if writes_land(self.mode):
            self._approval_gate(tool, p, digest, a.action, None)
            self._provenance_gate(tool, p, digest, a.action, None)
        else:
            self._provenance_gate(tool, p, digest, a.action, None, deny_only=True)


@functools.cache
def _result_type(tool: Tool) -> TypeAdapter[Any]:
    """A read tool's declared return type: the recorded JSON is typed back as the live call returns it."""
    hints = typing.get_type_hints(tool.fn)
    return TypeAdapter(hints.get("return", Any))


def under(wf: Workflow, policy: PolicyPack | None) -> Workflow:
    """The workflow with another policy pack (same format as its policy.yaml)."""
    replayed = type(wf)()
    if policy is not None:
        if policy.workflow != wf.name:
            raise ReplayError(f"the policy pack is for {policy.workflow!r}, not {wf.name!r}")
        replayed.policy = policy  # type: ignore[misc] - a cached_property takes an instance value
    return replayed


def replay(db: Database, wf: Workflow, rec: Recording, *, llm: LLMConfig | None = None) -> Outcome:
    """The decision `wf` (under its policy pack) takes for the recorded intent, in the sandbox."""
    intent = rec.intent
    if run_record.intake_digest(intent.intake) != rec.run["intake_digest"]:
        return Outcome(state=None, error=f"the intake changed after run {rec.run['run_id']} (an answered "
                                         f"question): only the intent's latest run replays")
    mode = Mode(rec.run["mode"])
    tracer = MemoryTracer(db, workflow=wf.name, intent_id=intent.intent_id, run_id=f"replay-{uuid.uuid4().hex}",
                          redact_fields=wf.policy.data_handling.redact_fields)
    gateway = ReplayGateway(wf, db, tracer, mode=mode, reads=rec.reads, intake=intent.intake)
    step = Step(intent=intent, tools=gateway, run_id=tracer.run_id, log=lambda _m: None)
    at = "read"
    try:
        intake = wf.intake_model.model_validate(intent.intake)
        context = wf.read(step, intake)
        at = "propose"
        if llm is not None:
            proposal, _usage = agent_steps.ask(wf, Proposer(llm), intake, context)
        elif rec.proposal is None:
            raise ReplayError("no proposal in the recording (pass --live-model to ask the model)")
        else:
            proposal = wf.proposal_model.model_validate(rec.proposal)
        at = "validate"
        carry = Carry(intent_id=intent.intent_id, intake=intake, context=context, proposal=proposal)
        ruled = agent_steps.with_suites(wf.validate(step, intake, context, proposal))
        ruling = agent_steps.rule_on(wf, gateway, carry, ruled, mode)
        if ruling.need_input is not None:
            return Outcome(state=S.WAITING_FOR_INPUT, reason=f"{ruling.need_input.field}: {ruling.need_input.question}")
        if ruling.problems:
            return Outcome(state=S.REJECTED_INPUT, reason="; ".join(ruling.problems))
        decision = ruling.decision
        assert decision is not None
        writes = tuple(run_record.planned_writes(wf, context, ruling.plan, tracer.redact))
        decided = {"decision": str(decision.decision), "rule": run_record.rule_name(decision), "writes": writes}
        stop = agent_steps.gate(decision, mode)
        if stop is not None:
            return Outcome(state=stop, reason="; ".join(decision.reasons), **decided)
        at = "commit"
        for a in ruling.plan:
            gateway.check_write(a)
        return Outcome(state=S.COMPLETED, reason=f"{len(writes)} write(s) planned, none executed", **decided)
    except ReplayError as exc:
        return Outcome(state=None, error=f"{at}: {exc}")
    except BudgetExceeded as exc:
        return Outcome(state=S.QUARANTINED, reason=f"{at}: {exc}")
    except ProposalFailed as exc:
        return Outcome(state=S.FAILED, reason=f"propose: {exc}")
    except Exception as exc:  # noqa: BLE001 - the step's guard records any other failure the same way
        # A blocked write fails commit (needs_attention, as agent_steps.commit); anything else fails the step.
        blocked = at == "commit" and isinstance(exc, ToolBlocked)
        return Outcome(state=S.NEEDS_ATTENTION if blocked else S.FAILED, reason=f"{at} failed: {type(exc).__name__}: {exc}")


def replay_selected(db: Database, workflows: dict[str, Workflow], selected: list[tuple[str, str]], *,
                    policy: PolicyPack | None = None, llm: LLMConfig | None = None,
                    prompt_version: str | None = None) -> list[Replayed]:
    """Replay each (intent, run); `policy` applies to the intents of its workflow, the others keep theirs."""
    if llm is not None and prompt_version is not None:
        for wf in workflows.values():
            if wf.prompt_version != prompt_version and (policy is None or policy.workflow == wf.name):
                raise ReplayError(f"a live model is asked with the code's prompts ({wf.name}: {wf.prompt_version}), "
                                  f"not {prompt_version}")
    out: list[Replayed] = []
    variants = {name: under(wf, policy if policy is not None and policy.workflow == name else None)
                for name, wf in workflows.items()}
    for intent_id, run_id in selected:
        rec = load(db, intent_id, run_id, prompt_version)
        wf = variants[rec.run["workflow"]]
        out.append(Replayed(intent_id=intent_id, workflow=wf.name, run_id=run_id, recorded=rec.outcome,
                            replayed=replay(db, wf, rec, llm=llm)))
    return out
