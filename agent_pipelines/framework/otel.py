"""OpenTelemetry export of the trace, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set.

One trace per intent run: a per-intent job run is one trace, and each intent of a batch run has its
own. Its spans, following the GenAI semantic conventions where they apply:

    invoke_agent <workflow>           the intent's run (root): final state and reason in this run
      step <name>                     each step (StepRun.guard), with the state the step left
        execute_tool <tool>           each tool call (a tool_calls row)
        chat <model>                  each LLM call (an llm_calls row): gen_ai.* usage attributes
        (events)                      policy decisions and trace notes, on their step's span

A run's steps are separate ops, possibly in separate processes or Celery workers, so the trace and the
root span's ids are derived from (run id, intent id): every step puts its spans under the same root
without passing anything along, and the root itself is emitted when the run is done with the intent
(StepRun.finish_trace). Attribute values come from the rows the Tracer stores, after its redaction.

Export goes through the OTLP HTTP exporter with a batch span processor configured by the standard
OTEL_* variables (headers, timeout, OTEL_BSP_*, OTEL_SERVICE_NAME); it is flushed at the end of each
step of a per-intent run and each batch step, so a short in-process run has exported when it returns.
Unset, nothing of OpenTelemetry is imported and every hook returns at once."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

from agent_pipelines.framework.redaction import redact_text

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SCOPE = "agent_pipelines"
NS = "agent_pipelines."  # our attributes' namespace
MAX_VALUE = 4096  # characters of a JSON attribute value (a tool's result, a proposal)

# The step span of the step running in this thread (StepRun.guard): the Tracer's rows become its children.
_step: ContextVar[Any] = ContextVar("agent_pipelines_otel_step", default=None)
# Set only while the root span is created: the ids it must have (DerivedIds in _provider).
_root_ids: ContextVar[tuple[int, int] | None] = ContextVar("agent_pipelines_otel_root", default=None)
_lock = threading.Lock()


class _Exporting(NamedTuple):
    """This process's exporting machinery, for one endpoint."""

    endpoint: str
    provider: Any  # opentelemetry.sdk.trace.TracerProvider
    tracer: Any
    health: _Health


_exporting: _Exporting | None = None


def endpoint() -> str | None:
    """Where spans go; None: OpenTelemetry is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    return next((os.environ[v] for v in ENDPOINT_VARS if os.environ.get(v)), None)


@dataclass(frozen=True)
class IntentTrace:
    """Where one intent's spans in one run go."""

    workflow: str
    intent_id: str
    run_id: str
    started_at: float  # the run's start (epoch seconds): the root span's start
    mode: str

    @classmethod
    def open(cls, workflow: str, intent_id: str, run_id: str, started_at: float | None, mode: str) -> IntentTrace | None:
        if endpoint() is None:
            return None
        return cls(workflow, intent_id, run_id, started_at or time.time(), mode)

    @property
    def _digest(self) -> bytes:
        return hashlib.sha256(f"{self.run_id}\x00{self.intent_id}".encode()).digest()

    @property
    def trace_id(self) -> int:
        return int.from_bytes(self._digest[:16]) or 1

    @property
    def root_span_id(self) -> int:
        return int.from_bytes(self._digest[16:24]) or 1

    def attributes(self) -> dict[str, Any]:
        return {NS + "workflow": self.workflow, NS + "intent_id": self.intent_id, NS + "run_id": self.run_id,
                NS + "mode": self.mode}


class _Health:
    """When an export last failed: a collector that is down must cost a run one exporter timeout, not
    one per step. For a while after a failure, steps do not flush (the processor's background thread
    still exports on its schedule, and retries)."""

    PAUSE_S = 60.0

    def __init__(self) -> None:
        self.failed_at: float | None = None

    def paused(self) -> bool:
        return self.failed_at is not None and time.monotonic() - self.failed_at < self.PAUSE_S


def _tracer() -> Any:
    """This process's tracer for the current endpoint (built on first use; rebuilt if it changed)."""
    global _exporting
    url = endpoint()
    if url is None:
        return None
    with _lock:
        if _exporting is not None and _exporting.endpoint == url:
            return _exporting.tracer
        if _exporting is not None:
            _exporting.provider.shutdown()
        provider, health = _provider()
        _exporting = _Exporting(url, provider, provider.get_tracer(SCOPE), health)
        return _exporting.tracer


def _provider() -> tuple[Any, _Health]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class DerivedIds(RandomIdGenerator):
        """Random ids, except for a root span, whose ids its child spans already name (IntentTrace)."""

        def generate_trace_id(self) -> int:
            ids = _root_ids.get()
            return ids[0] if ids else super().generate_trace_id()

        def generate_span_id(self) -> int:
            ids = _root_ids.get()
            return ids[1] if ids else super().generate_span_id()

    class Watched(SpanExporter):
        """The OTLP exporter, its failures noted in `health`."""

        def __init__(self, inner: Any, health: _Health) -> None:
            self.inner, self.health = inner, health

        def export(self, spans: Any) -> Any:
            result = self.inner.export(spans)
            if result != SpanExportResult.SUCCESS:
                self.health.failed_at = time.monotonic()
            return result

        def shutdown(self) -> None:
            self.inner.shutdown()

    health = _Health()
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over our default name.
    named = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": SCOPE}
    # The exporter reads the endpoint (appending /v1/traces to the generic one), headers, timeout
    # and compression from the OTEL_EXPORTER_OTLP_* variables itself.
    provider = TracerProvider(resource=Resource.create(named), id_generator=DerivedIds())
    provider.add_span_processor(BatchSpanProcessor(Watched(OTLPSpanExporter(), health)))
    return provider, health


def flush_paused() -> bool:
    """True while steps skip their flush because an export failed within the last minute (_Health)."""
    return _exporting is not None and _exporting.health.paused()


def flush() -> None:
    """Export what is queued now (end of a step): a short in-process run must not end with spans unsent."""
    if _exporting is not None and endpoint() is not None and not _exporting.health.paused():
        _exporting.provider.force_flush()


@contextmanager
def step_span(trace: IntentTrace | None, step: str, outcome: Callable[[], dict[str, Any]]) -> Iterator[None]:
    """The span of one step of one intent; `outcome` gives the attributes known at its end (the state)."""
    tracer = _tracer() if trace is not None else None
    if tracer is None or trace is None:
        yield
        return
    from opentelemetry import trace as ot

    parent = ot.SpanContext(trace.trace_id, trace.root_span_id, is_remote=True,
                            trace_flags=ot.TraceFlags(ot.TraceFlags.SAMPLED))
    span = tracer.start_span(f"step {step}", context=ot.set_span_in_context(ot.NonRecordingSpan(parent)),
                             attributes={**trace.attributes(), NS + "step": step})
    token = _step.set((span, trace, tracer))
    try:
        yield
    except BaseException as exc:
        span.set_status(ot.Status(ot.StatusCode.ERROR, _why(exc)))
        raise
    finally:
        _step.reset(token)
        span.set_attributes(_clean(outcome()))
        span.end()


def end_intent(trace: IntentTrace | None, *, state: str | None, reason: str | None, approval_id: str | None) -> None:
    """The root span: this run is done with the intent (it finished, parked, failed or stopped)."""
    tracer = _tracer() if trace is not None else None
    if tracer is None or trace is None:
        return
    from opentelemetry import trace as ot
    from opentelemetry.context import Context

    attrs = {**trace.attributes(), "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": trace.workflow,
             NS + "state": state, NS + "reason": reason, NS + "approval_id": approval_id}
    token = _root_ids.set((trace.trace_id, trace.root_span_id))
    try:  # an empty Context: never the child of whatever span the host process has current
        span = tracer.start_span(f"invoke_agent {trace.workflow}", context=Context(), attributes=_clean(attrs),
                                 start_time=int(trace.started_at * 1e9))
    finally:
        _root_ids.reset(token)
    if state in ("failed", "needs_attention", "quarantined"):
        span.set_status(ot.Status(ot.StatusCode.ERROR, f"intent {state}"))
    span.end()


def record(kind: str, row: dict[str, Any]) -> None:
    """A trace row (already redacted by the Tracer) as a child span or an event of the current step."""
    current = _step.get()
    if current is None:
        return
    step, trace, tracer = current
    if kind == "tool_call":
        _tool_span(tracer, step, trace, row)
    elif kind == "llm_call":
        _llm_span(tracer, step, trace, row)
    else:
        step.add_event(kind, _clean({NS + k: v for k, v in row.items() if k != "kind"}))


def _tool_span(tracer: Any, step: Any, trace: IntentTrace, row: dict[str, Any]) -> None:
    end = time.time_ns()
    attrs = {**trace.attributes(), "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": row.get("tool"),
             "gen_ai.tool.type": "extension", "gen_ai.tool.call.arguments": row.get("params"),
             "gen_ai.tool.call.result": row.get("result"), NS + "tool": row.get("tool"),
             NS + "tool.kind": row.get("kind"), NS + "tool.impact": row.get("impact"),
             NS + "status": row.get("status"), NS + "attempts": row.get("attempts"),
             NS + "latency_ms": row.get("latency_ms"), NS + "call_digest": row.get("call_digest")}
    if row.get("error"):
        attrs["error.type"] = row["status"]
    _child(tracer, step, f"execute_tool {row.get('tool')}", attrs, row.get("error"),
           start=end - int(float(row.get("latency_ms") or 0) * 1e6), end=end)


def _llm_span(tracer: Any, step: Any, trace: IntentTrace, row: dict[str, Any]) -> None:
    known = {"kind", "provider", "model", "prompt_version", "attempts", "prompt_tokens", "completion_tokens",
             "cost_usd", "output", "error"}
    end = time.time_ns()
    # The row has no latency of its own unless it says so: the call is the propose step's work.
    latency = row.get("latency_ms")
    start = end - int(float(latency) * 1e6) if latency is not None else step.start_time
    attrs = {**trace.attributes(), "gen_ai.operation.name": "chat", "gen_ai.system": row.get("provider"),
             "gen_ai.provider.name": row.get("provider"), "gen_ai.request.model": row.get("model"),
             "gen_ai.request.temperature": 0.0, "gen_ai.usage.input_tokens": row.get("prompt_tokens"),
             "gen_ai.usage.output_tokens": row.get("completion_tokens"),
             NS + "prompt_version": row.get("prompt_version"), NS + "attempts": row.get("attempts"),
             NS + "cost_usd": row.get("cost_usd"), NS + "llm.output": row.get("output"),
             NS + "status": "error" if row.get("error") else "ok",
             **{NS + "llm." + k: v for k, v in row.items() if k not in known}}
    if row.get("error"):
        attrs["error.type"] = "proposal_failed"
    _child(tracer, step, f"chat {row.get('model')}", attrs, row.get("error"), start=start, end=end)


def _child(tracer: Any, step: Any, name: str, attrs: dict[str, Any], error: Any, *, start: int, end: int) -> None:
    """A finished child span of the step (the row is written after the call: its times are given)."""
    from opentelemetry import trace as ot

    span = tracer.start_span(name, context=ot.set_span_in_context(step), attributes=_clean(attrs), start_time=start)
    if error:
        span.set_status(ot.Status(ot.StatusCode.ERROR, str(error)[:500]))
    span.end(end_time=end)


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attribute values: primitives as they are, anything else as (capped) JSON; no Nones."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, (str, bool, int, float)):
            out[k] = v[:MAX_VALUE] if isinstance(v, str) else v
        else:
            out[k] = json.dumps(v, default=str, sort_keys=True)[:MAX_VALUE]
    return out


def _why(exc: BaseException) -> str:
    """A failed step's status: the guard already redacted a Failure's message; redact again for any other."""
    return redact_text(f"{type(exc).__name__}: {exc}")[:500]
