"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, each intent run is one trace at an OTLP HTTP
receiver the test starts on 127.0.0.1 (protobuf ExportTraceServiceRequest, as a collector gets it):
a root span, a span per step, per tool call and per LLM call (GenAI attributes), redacted like our trace."""

import gzip
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from tests.helpers import intake, register, run_intent, state
from tests.support import QuietHandler, http_receiver
from tests.llm_server import ScriptedLLM, serve
from tests.test_batch import _batch
from tests.test_llm_instructor import GOOD, llm_project

IBAN = "DE89370400440532013000"  # the vendor's payment account (conftest `seeded`): read and written
EMAIL = "remit.desk@acme-supply.example"
# validate and verify run in two phases around the Great Expectations checks: a span each
STEPS = ["read", "propose", "validate", "validate", "approve_gate", "commit", "verify", "verify", "hand_off"]


class Receiver:
    """An OTLP/HTTP traces endpoint: every exported span, decoded, with its attributes as a dict."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self.url = ""
        self._lock = threading.Lock()

    def take(self, body: bytes) -> None:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        with self._lock:
            self.requests += 1
            for rs in req.resource_spans:
                resource = _attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append({
                            "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex() or None, "name": s.name, "attrs": _attrs(s.attributes),
                            "events": [(e.name, _attrs(e.attributes)) for e in s.events],
                            "status": s.status.code, "resource": resource,
                            "start": s.start_time_unix_nano, "end": s.end_time_unix_nano})


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    got = Receiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(404)
                return
            got.take(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    with http_receiver(Handler) as url:
        got.url = url
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", got.url)  # the exporter appends /v1/traces
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        yield got


def _every_value(span: dict[str, Any]) -> list[str]:
    values = [str(v) for v in span["attrs"].values()] + [span["name"]]
    values += [str(v) for _, attrs in span["events"] for v in attrs.values()]
    return values + [str(v) for v in span["resource"].values()]


def _tree(spans: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The trace's one root and each span's children."""
    roots = [s for s in spans if s["parent"] is None]
    assert len(roots) == 1, [s["name"] for s in roots]
    children: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        if s["parent"] is not None:
            children.setdefault(s["parent"], []).append(s)
    return roots[0], children


def test_an_intent_run_through_the_model_is_one_redacted_trace(seeded, receiver):
    memo = f"Please remit to IBAN DE89 3704 0044 0532 0130 00; questions to {EMAIL}"
    intent_id = register(seeded, intake(memo=memo))
    reply = {**GOOD, "rationale": f"PO-1 matches; vendor contact {EMAIL}, pay to {IBAN}"}
    with serve(ScriptedLLM([reply])) as llm:
        assert run_intent(llm_project(seeded, llm.base_url), intent_id).success
    assert state(seeded, intent_id) == "completed"

    spans = receiver.spans
    assert len({s["trace_id"] for s in spans}) == 1  # one trace for the intent run
    root, children = _tree(spans)
    assert root["name"] == "invoke_agent invoice_matching"
    assert root["attrs"]["gen_ai.operation.name"] == "invoke_agent"
    assert root["attrs"]["agent_pipelines.intent_id"] == intent_id
    assert root["attrs"]["agent_pipelines.state"] == "completed"
    run_id = root["attrs"]["agent_pipelines.run_id"]
    assert seeded.instance.get_run_by_id(run_id) is not None

    steps = children[root["span_id"]]
    assert [s["name"] for s in sorted(steps, key=lambda s: s["start"])] == [f"step {n}" for n in STEPS]
    by_step = {s["attrs"]["agent_pipelines.step"]: s for s in sorted(steps, key=lambda s: s["start"])}
    assert by_step["hand_off"]["attrs"]["agent_pipelines.state"] == "completed"
    assert by_step["commit"]["attrs"]["agent_pipelines.state"] == "committing"
    assert all(s["attrs"]["agent_pipelines.run_id"] == run_id for s in spans)

    tools = {s["name"]: s for s in children[by_step["read"]["span_id"]]}
    vendor = tools["execute_tool find_vendor"]["attrs"]
    assert vendor["gen_ai.operation.name"] == "execute_tool" and vendor["gen_ai.tool.name"] == "find_vendor"
    assert vendor["agent_pipelines.status"] == "ok" and vendor["agent_pipelines.tool.kind"] == "read"
    assert '"name": "Acme Supply"' in vendor["gen_ai.tool.call.result"]
    writes = {s["name"]: s["attrs"] for s in children[by_step["commit"]["span_id"]]}
    assert {n for n, a in writes.items() if a["agent_pipelines.tool.kind"] == "write"} == {
        "execute_tool stage_invoice", "execute_tool record_po_invoiced", "execute_tool schedule_payment"}
    # the payment's account (the pack's redact_fields) is exported masked
    assert '"payment_account": "[REDACTED:field]"' in writes["execute_tool schedule_payment"]["gen_ai.tool.call.result"]

    [chat] = children[by_step["propose"]["span_id"]]
    a = chat["attrs"]
    assert chat["name"] == "chat gpt-4o-mini"
    assert (a["gen_ai.operation.name"], a["gen_ai.system"], a["gen_ai.provider.name"]) == ("chat", "openai", "openai")
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (400, 60)
    assert a["agent_pipelines.prompt_version"] == "invoice_match.v1" and a["agent_pipelines.status"] == "ok"
    assert "[REDACTED:email]" in a["agent_pipelines.llm.output"]
    # the policy decision is an event of the validate step
    [(_, decision)] = [e for s in steps for e in s["events"] if e[0] == "policy_decision"]
    assert decision["agent_pipelines.decision"] == "allow"

    # nothing exported anywhere holds the account number or the e-mail address
    leaked = [(s["name"], v) for s in spans for v in _every_value(s)
              if IBAN in v.replace(" ", "") or EMAIL in v]
    assert leaked == []


def test_each_intent_of_a_batch_run_is_its_own_trace(seeded, receiver):
    ids = [register(seeded, intake(source_name=f"inv-{n}.json", invoice_number=f"INV-{n}", total_cents=t,
                                   memo=f"questions to {EMAIL}"))
           for n, t in ((1, 100_000), (2, 1))]  # the second's total is far off its lines: a human decides
    result = _batch(seeded, ids, chunk_size=500)
    assert result.success
    states = {i: state(seeded, i) for i in ids}

    traces: dict[str, list[dict[str, Any]]] = {}
    for s in receiver.spans:
        traces.setdefault(s["trace_id"], []).append(s)
    assert len(traces) == 2
    by_intent = {}
    for spans in traces.values():
        root, children = _tree(spans)
        assert {s["attrs"]["agent_pipelines.intent_id"] for s in spans} == {root["attrs"]["agent_pipelines.intent_id"]}
        assert {s["attrs"]["agent_pipelines.run_id"] for s in spans} == {result.run_id}
        by_intent[root["attrs"]["agent_pipelines.intent_id"]] = (root, children)
    assert set(by_intent) == set(ids)

    done, _ = by_intent[ids[0]]
    assert states[ids[0]] == "completed" and done["attrs"]["agent_pipelines.state"] == "completed"
    assert [s["attrs"]["agent_pipelines.step"] for s in sorted(by_intent[ids[0]][1][done["span_id"]],
                                                               key=lambda s: s["start"])] == STEPS
    assert done["attrs"]["agent_pipelines.run_id"] == result.run_id
    waiting, children = by_intent[ids[1]]
    assert states[ids[1]] == "waiting_for_approval" == waiting["attrs"]["agent_pipelines.state"]
    assert "approval" in waiting["attrs"]["agent_pipelines.reason"]
    # its run stopped at the approval gate: no commit span
    assert [s["attrs"]["agent_pipelines.step"] for s in sorted(children[waiting["span_id"]],
                                                               key=lambda s: s["start"])] == STEPS[:5]
    offline = [s for spans in traces.values() for s in spans if s["name"].startswith("chat ")]
    assert len(offline) == 2 and all(s["attrs"]["gen_ai.provider.name"] == "offline" for s in offline)
    assert not [v for spans in traces.values() for s in spans for v in _every_value(s) if EMAIL in v]


def test_without_the_endpoint_nothing_is_exported_or_imported(seeded, monkeypatch):
    import subprocess
    import sys

    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    intent_id = register(seeded, intake())
    assert run_intent(seeded, intent_id).success and state(seeded, intent_id) == "completed"
    # a fresh process that builds the definitions and imports every hook never imports the SDK
    code = ("import sys, agent_pipelines.framework.jobs, agent_pipelines.framework.batch, agent_pipelines.definitions;"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def _half(n: int, source: str | None = None) -> Any:
    """Half of PO-1 (250.00 of bolts, 250.00 of brackets) as invoice INV-H<n>."""
    from agent_pipelines.workflows.invoice_matching.models import InvoiceLine

    return intake(source_name=source or f"h{n}.json", invoice_number=f"INV-H{n}", total_cents=50_000, lines=(
        InvoiceLine(description="Hex bolts M8", sku="BLT-8", quantity=50, unit_price_cents=500, amount_cents=25_000),
        InvoiceLine(description="Steel bracket", sku="BRK-1", quantity=25, unit_price_cents=1000, amount_cents=25_000)))


def test_an_intent_the_batch_defers_or_holds_back_keeps_one_trace_through_the_solo_retry(seeded, receiver):
    # h2 bills the PO h1 changes first: deferred at commit, retried alone; the copy of h1 waits for the retry
    first, deferred, copy = (register(seeded, _half(1)), register(seeded, _half(2)),
                             register(seeded, _half(1, source="h1-again.json")))
    ids = [first, deferred, copy]
    assert _batch(seeded, ids, chunk_size=500).success
    traces: dict[str, list[dict[str, Any]]] = {}
    for s in receiver.spans:
        traces.setdefault(s["attrs"]["agent_pipelines.intent_id"], []).append(s)
    assert set(traces) == set(ids) and all(len({s["trace_id"] for s in spans}) == 1 for spans in traces.values())

    def steps(intent_id: str) -> list[dict[str, Any]]:
        root, children = _tree(traces[intent_id])
        assert root["attrs"]["agent_pipelines.state"] == state(seeded, intent_id)
        return sorted(children[root["span_id"]], key=lambda s: s["start"])

    assert [s["attrs"]["agent_pipelines.step"] for s in steps(first)] == STEPS
    retried = steps(deferred)
    assert state(seeded, deferred) == "completed"
    assert [s["attrs"]["agent_pipelines.step"] for s in retried] == STEPS[:6] + STEPS
    commit = retried[5]
    assert commit["attrs"]["agent_pipelines.state"] == "failed" and commit["status"] == 2  # ERROR: deferred
    held = steps(copy)
    assert held[0]["start"] > retried[5]["end"]  # held back: its steps run in the solo retry only
    assert [s["attrs"]["agent_pipelines.step"] for s in held][:3] == ["read", "propose", "validate"]


def test_a_failed_step_ends_the_trace_with_an_error(seeded, receiver):
    from tests.test_llm_instructor import BAD_ARITHMETIC

    intent_id = register(seeded, intake())
    with serve(ScriptedLLM([BAD_ARITHMETIC])) as llm:
        assert not run_intent(llm_project(seeded, llm.base_url), intent_id).success
    assert state(seeded, intent_id) == "failed"
    root, children = _tree(receiver.spans)
    assert root["attrs"]["agent_pipelines.state"] == "failed" and root["status"] == 2  # ERROR
    assert "no valid proposal after 3 attempt(s)" in root["attrs"]["agent_pipelines.reason"]
    read, propose = sorted(children[root["span_id"]], key=lambda s: s["start"])
    assert (read["status"], propose["status"], propose["attrs"]["agent_pipelines.state"]) == (0, 2, "failed")
    [chat] = children[propose["span_id"]]
    assert chat["status"] == 2 and chat["attrs"]["agent_pipelines.attempts"] == 3
    assert chat["attrs"]["gen_ai.usage.input_tokens"] == 1200 and chat["attrs"]["error.type"] == "proposal_failed"


def test_a_collector_that_is_down_never_fails_a_run(seeded, monkeypatch):
    import socket

    from agent_pipelines.framework import otel

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # seconds, in this SDK
    intent_id = register(seeded, intake())
    assert run_intent(seeded, intent_id).success and state(seeded, intent_id) == "completed"
    # the failed export was noted: later steps leave the spans to the background exporter
    assert otel.flush_paused()
