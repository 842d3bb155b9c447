"""The trace: every tool call, LLM call and policy decision, redacted, in our tables and the run log."""

import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from agent_pipelines.framework import otel
from agent_pipelines.framework.budgets import Spent
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.ledger import WriteReceipt
from agent_pipelines.framework.policy import PolicyDecision
from agent_pipelines.framework.redaction import redact
from agent_pipelines.framework.rowbuffer import Direct, RowKind, Sink
from agent_pipelines.framework.tables import llm_calls, policy_decisions, tool_calls

Emit = Callable[[str, dict[str, Any]], None]
ROW_KINDS = {t.name: RowKind(t, "insert") for t in (tool_calls, llm_calls, policy_decisions)}


class Tracer:
    """Records to our tables and hands each (redacted) record to `emit`, which the Dagster op wires to
    its run log; the op also attaches `events` to its output metadata, so the UI shows them."""

    def __init__(self, db: Database, *, workflow: str, intent_id: str | None, run_id: str | None,
                 emit: Emit | None = None, redact_fields: tuple[str, ...] = (), sink: Sink | None = None) -> None:
        self.db, self.workflow, self.intent_id, self.run_id = db, workflow, intent_id, run_id
        # Where the rows go: the database now, or a batch step's buffer (framework/rowbuffer.py).
        self.sink: Sink = sink or Direct(db)
        self._direct = Direct(db)
        self._emit = emit
        self.redact_fields = redact_fields
        self.events: list[dict[str, Any]] = []
        self.recorded_calls: Counter[str] = Counter()  # tool_calls rows written, by call digest (budgets)
        self.recorded_spent = Spent()  # the tokens and cost of the llm_calls rows written (budgets)
        self.step: str | None = None  # the step making the calls (StepRun.guard sets it): replay reads by it

    def _record(self, kind: str, table: Any, row: dict[str, Any], own: dict[str, Any] | None = None) -> None:
        """`row` redacted, with `own`: digests the framework computed (sha256 of what the row holds),
        which carry no data to mask. Scanning each for secrets cost ~40 us, ten times an intent."""
        row = {**self.redact(row), **(own or {})}
        values = dict(run_id=self.run_id, intent_id=self.intent_id, workflow=self.workflow, at=utcnow(), **row)
        # An LLM call that spent tokens or money is written at once even in a batch: the budget counts
        # them right after it, and a crash must not lose spend. One that spent nothing (the offline
        # proposer) goes with the step's other rows.
        spent = table is llm_calls and (row["prompt_tokens"] or row["completion_tokens"] or row["cost_usd"])
        (self._direct if spent else self.sink).put(ROW_KINDS[table.name], values)
        event = {"kind": kind, **row}
        self.events.append(event)
        otel.record(kind, row)  # the same redacted row, exported when OpenTelemetry is on
        if self._emit:
            self._emit(kind, event)

    def redact(self, value: Any) -> Any:
        """Secrets, PII and the policy's redact_fields masked: what may reach a table or a log."""
        return redact(value, fields=self.redact_fields)

    def tool_call(self, *, tool: str, kind: str, impact: str, params: Any, result: Any, status: str,
                  error: str | None, attempts: int, latency_ms: float, call_digest: str | None = None) -> None:
        self.recorded_calls[str(call_digest)] += 1
        row = dict(tool=tool, kind=kind, impact=impact, params=_jsonable(params), result=_jsonable(result),
                   status=status, error=_storable(error), attempts=attempts, latency_ms=round(latency_ms, 2),
                   step=self.step)
        own: dict[str, Any] = {"call_digest": call_digest}
        if isinstance(result, WriteReceipt):  # its idempotency key is the ledger's digest too
            receipt = row.pop("result")
            own["result"] = {"idempotency_key": receipt.pop("idempotency_key"), **self.redact(receipt)}
        self._record("tool_call", tool_calls, row, own)

    def llm_call(self, *, provider: str, model: str, prompt_version: str, attempts: int, prompt_tokens: int,
                 completion_tokens: int, cost_usd: float, output: Any, error: str | None = None,
                 request_digest: str | None = None, response: Any = None) -> None:
        # `response` is the raw answer (framework/recording.py), redacted here like every other row.
        self.recorded_spent.tokens += prompt_tokens + completion_tokens
        self.recorded_spent.cost_usd += cost_usd
        self._record("llm_call", llm_calls, {
            "provider": provider, "model": model, "prompt_version": prompt_version, "attempts": attempts,
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "cost_usd": cost_usd,
            "output": _jsonable(output), "error": error,
            "response": None if response is None else _jsonable(response)}, own={"request_digest": request_digest})

    def policy(self, subject: str, decision: PolicyDecision) -> None:
        self._record("policy_decision", policy_decisions, dict(
            policy_digest=decision.policy_digest, subject=_storable(subject), decision=decision.decision,
            rule=decision.rule, observed=_jsonable({"values": decision.observed, "reasons": decision.reasons})))

    def note(self, kind: str, data: dict[str, Any]) -> None:
        """A trace event that lives only in the run log (writes are already rows in the ledger)."""
        event = {"kind": kind, **self.redact(_jsonable(data))}
        self.events.append(event)
        otel.record(kind, event)
        if self._emit:
            self._emit(kind, event)


def _jsonable(value: Any) -> Any:
    """A JSON value every backend stores: hostile inputs carry NaN, infinities and NUL characters,
    which PostgreSQL's json and text types refuse (the refusal must still be recorded)."""
    # Models at any depth (a read tool's list of snapshots) are recorded as data a replay can type back,
    # not as each model's repr. The plain JSON types (exact types, str keys) are walked here, since a
    # json round trip of every traced value cost ~1 ms an intent on the batch path (issue 11); anything
    # else goes through the round trip, which gives the same value for the plain types.
    t = type(value)
    if t is str:
        return value.replace("\x00", "\\x00") if "\x00" in value else value
    if t is int or t is bool or value is None:
        return value
    if t is float:
        return value if math.isfinite(value) else str(value)
    if t is dict and all(type(k) is str for k in value):
        return {(k.replace("\x00", "\\x00") if "\x00" in k else k): _jsonable(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [_jsonable(v) for v in value]
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump(mode="python"))
    return _round_trip(value)


def _round_trip(value: Any) -> Any:
    # json encodes the strings: it escapes a hostile lone surrogate, which pydantic's encoder refuses.
    return _storable(json.loads(json.dumps(value, default=_plain)))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")  # json recurses into it (and calls back for dates, ...)
    try:
        return to_jsonable_python(value, fallback=str)
    except UnicodeEncodeError:
        return str(value)


def _storable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_storable(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value
