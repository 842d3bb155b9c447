"""Turning sources into intents. Sensors call these: they read, register the intent and emit a
RunRequest whose run_key is the intent id. Bad input is recorded (rejected_input, with the reason and
the evidence) instead of raising, so one bad file never stops a sensor."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel

from agent_pipelines.framework import controls, inputs
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.intents import Intent, IntentStore, digest, file_intent_id
from agent_pipelines.framework.jobs import launch_tags, run_config
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.workflow import Workflow

MAX_FILE_BYTES = 1024 * 1024  # larger files are rejected before they are read into memory


class InputRejected(ValueError):
    """Raised by a workflow's parser with a reason a person can act on."""


class InboxCursor(BaseModel):
    """Files are taken in (mtime, name) order; names at the newest mtime are kept to break ties."""

    mtime_ns: int = 0
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, raw: str | None) -> "InboxCursor":
        return cls.model_validate_json(raw) if raw else cls()

    def new_files(self, inbox: Path) -> list[tuple[int, Path]]:
        if not inbox.is_dir():
            return []
        found = []
        for p in inbox.iterdir():
            if not p.is_file() or p.name.startswith("."):
                continue
            m = p.stat().st_mtime_ns
            if m > self.mtime_ns or (m == self.mtime_ns and p.name not in self.names):
                found.append((m, p))
        return sorted(found, key=lambda t: (t[0], t[1].name))

    def advance(self, seen: list[tuple[int, Path]]) -> "InboxCursor":
        if not seen:
            return self
        top = max(m for m, _ in seen)
        names = {p.name for m, p in seen if m == top} | (set(self.names) if top == self.mtime_ns else set())
        return InboxCursor(mtime_ns=top, names=tuple(sorted(names)))


def register_file(store: IntentStore, wf: Workflow, path: Path,
                  parse: Callable[[str, bytes], BaseModel]) -> tuple[Intent, bool]:
    """Register one inbox file as an intent (same bytes -> same intent, whatever the name)."""
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        # Too big to read: identify it by name, size and mtime, and keep the file where it is.
        ident = digest(f"{path.name}:{size}:{path.stat().st_mtime_ns}")
        return store.register(
            intent_id=f"{wf.name}:{ident[:24]}", workflow=wf.name, correlation_id=path.name,
            source_ref=str(path), source_digest=ident, intake={"source_name": path.name, "size": size},
            state=IntentState.REJECTED_INPUT,
            reason=f"{path.name} is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}. Split or shrink it and re-drop it.")
    content = path.read_bytes()
    intent_id = file_intent_id(wf.name, content)
    try:
        intake = parse(path.name, content)
    except (InputRejected, ValueError) as exc:
        preview = content[:2000].decode("utf-8", errors="replace")
        return store.register(
            intent_id=intent_id, workflow=wf.name, correlation_id=path.name, source_ref=str(path),
            source_digest=digest(content), intake={"source_name": path.name, "preview": preview},
            state=IntentState.REJECTED_INPUT, reason=f"unreadable input: {exc}")
    data: Any = json.loads(intake.model_dump_json())
    correlation = correlation_of(intake, path)
    answered = answer_waiting(store, wf, correlation, data, source=path.name)
    if answered:
        # A follow-up (e.g. the vendor re-sent the invoice with the missing PO number): it answers the
        # waiting intent, which resumes from its persisted steps; this source needs no run of its own.
        return store.register(intent_id=intent_id, workflow=wf.name, correlation_id=correlation,
                              source_ref=str(path), source_digest=digest(content), intake=data,
                              state=IntentState.COMPLETED, reason=answered)
    return store.register(intent_id=intent_id, workflow=wf.name, correlation_id=correlation,
                          source_ref=str(path), source_digest=digest(content), intake=data)


def answer_waiting(store: IntentStore, wf: Workflow, correlation: str, data: dict[str, Any], source: str) -> str | None:
    """If an intent with the same correlation waits for a field this source supplies, answer it."""
    for waiting in store.waiting_for_input(wf.name, correlation):
        with store.db.connect() as conn:
            question = inputs.pending_question(conn, waiting.intent_id)
        if question is None or data.get(question["field"]) in (None, ""):
            continue
        value = data[question["field"]]
        try:
            inputs.provide(store.db, waiting.intent_id, {question["field"]: value}, by=f"source:{source}",
                           allowed_fields=set(wf.intake_model.model_fields))
        except inputs.InputRefused:
            continue
        return f"follow-up: answered {question['field']}={value!r} for intent {waiting.intent_id}"
    return None


def correlation_of(intake: BaseModel, path: Path) -> str:
    """A business reference shared by related inputs (a resubmitted invoice, a follow-up answer)."""
    vendor = getattr(intake, "vendor_ref", None)
    number = getattr(intake, "invoice_number", None)
    return f"{vendor}:{number}" if vendor and number else path.name


def run_request(db: Database, wf: Workflow, intent: Intent, model: str) -> dg.RunRequest:
    """The intent's one run (run_key = intent id), pinned to the workflow's current mode."""
    return dg.RunRequest(run_key=intent.intent_id, run_config=run_config(wf, intent.intent_id),
                         tags=launch_tags(db, wf, intent.intent_id, model=model))


def launch_stopped(db: Database, workflow: str) -> dg.SkipReason | None:
    """Every launching sensor asks this first: a global or workflow kill switch stops new runs (the
    sensor leaves its cursor where it is, so nothing it has not seen is lost)."""
    engaged = controls.launch_blocked(db, workflow)
    return dg.SkipReason(f"{workflow}: not launching, {engaged.describe()}") if engaged else None


# -- record sensors: follow a table by its autoincrement `seq` ---------------------------------------
RECORD_BATCH = 200  # rows per tick: keeps a tick well inside the sensor gRPC timeout


class SeqCursor(BaseModel):
    """A record sensor's cursor: the highest `seq` seen. Each row is read once however often the sensor
    ticks; a lost cursor only re-registers intents that already exist (same record and version)."""

    last_seq: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "SeqCursor":
        return cls.model_validate_json(raw) if raw else cls()


def build_record_sensor(wf: Workflow, job: dg.JobDefinition, *, name: str, noun: str,
                        read_new: Callable[[AgentRuntime, SeqCursor], list[Any]],
                        register: Callable[[IntentStore, Workflow, Any], tuple[Intent, bool]],
                        ref: Callable[[Any], str], description: str) -> dg.SensorDefinition:
    """One intent and one run (run_key = intent id) per new row; `register` records a row it cannot
    act on as rejected_input with a reason, and that row gets no run. Sensors only read the system of
    record and write intents."""

    @dg.sensor(name=name, job=job, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.RUNNING,
               description=description)
    def record_sensor(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        if stopped := launch_stopped(runtime.db, wf.name):
            return stopped
        cursor = SeqCursor.parse(context.cursor)
        new = read_new(runtime, cursor)
        if not new:
            return dg.SkipReason(f"no {noun}s after seq {cursor.last_seq}")
        store = IntentStore(runtime.db)
        model = runtime.proposer().model_name
        requests: dict[str, dg.RunRequest] = {}
        rejected = 0
        for intake in new:
            intent, _created = register(store, wf, intake)
            if intent.state == IntentState.REJECTED_INPUT:
                rejected += 1
                context.log.info(f"{ref(intake)}: {intent.reason}")
            elif not intent.is_terminal:
                requests[intent.intent_id] = run_request(runtime.db, wf, intent, model=model)
        context.log.info(f"{len(new)} {noun}(s): {len(requests)} run request(s), {rejected} rejected")
        return dg.SensorResult(run_requests=list(requests.values()),
                               cursor=SeqCursor(last_seq=new[-1].seq).model_dump_json())

    return record_sensor
