"""Turning sources into intents. Sensors call these: they read, register the intent and emit a
RunRequest whose run_key is the intent id. Bad input is recorded (rejected_input, with the reason and
the evidence) instead of raising, so one bad file or row never stops a sensor. Infrastructure errors
(the database is down) are different: they stop the tick where it is, and what was not registered is
retried on the next tick."""

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel
from sqlalchemy import Table, Text, bindparam, cast, select

from agent_pipelines.framework import controls, inputs
from agent_pipelines.framework.db import Database, is_transient, utcnow
from agent_pipelines.framework.intents import Intent, IntentStore, digest, file_intent_id, record_intent_id
from agent_pipelines.framework.batch import batch_run_config
from agent_pipelines.framework.jobs import launch_tags, run_config
from agent_pipelines.framework.steps import TAG
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.sql import upsert
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.tables import intents, sensor_cursors
from agent_pipelines.framework.workflow import Workflow

MAX_FILE_BYTES = 1024 * 1024  # larger files are rejected before they are read into memory

# Failures of our own infrastructure, not of the input: never recorded as the input's fault.


class InputRejected(ValueError):
    """Raised by a workflow's parser with a reason a person can act on."""


# -- files --------------------------------------------------------------------------------------------
def register_file(store: IntentStore, wf: Workflow, path: Path,
                  parse: Callable[[str, bytes], BaseModel]) -> tuple[Intent, bool]:
    """Register one inbox file as an intent (same bytes -> same intent, whatever the name)."""
    st = path.stat()
    if st.st_size > MAX_FILE_BYTES:
        return register_oversized(store, wf, path, st.st_size, st.st_mtime_ns)
    return register_content(store, wf, path, path.read_bytes(), parse)


def oversized_digest(name: str, size: int, mtime_ns: int) -> str:
    """A file too big to read is identified by name, size and mtime instead of its bytes."""
    return digest(f"{name}:{size}:{mtime_ns}")


def register_oversized(store: IntentStore, wf: Workflow, path: Path, size: int, mtime_ns: int) -> tuple[Intent, bool]:
    ident = oversized_digest(path.name, size, mtime_ns)
    # Too big to read: the file stays where it is, and the intent says what to do about it.
    return store.register(
        intent_id=f"{wf.name}:{ident[:24]}", workflow=wf.name, correlation_id=path.name[:200],
        source_ref=str(path), source_digest=ident, intake={"source_name": path.name, "size": size},
        state=IntentState.REJECTED_INPUT,
        reason=f"{path.name} is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}. Split or shrink it and re-drop it.")


def register_content(store: IntentStore, wf: Workflow, path: Path, content: bytes,
                     parse: Callable[[str, bytes], BaseModel]) -> tuple[Intent, bool]:
    """Register a file's bytes. Content seen before (under any name) is its existing intent: it is
    neither parsed again nor considered as a follow-up, so a copy never answers its own question."""
    existing = find_intent(store, file_intent_id(wf.name, content))
    if existing is not None:
        return existing, False
    row, data = content_row(wf, path, content, parse)
    if data is not None:
        answered = answer_waiting(store, wf, row["correlation_id"], data, source=path.name,
                                  own_intent_id=row["intent_id"])
        if answered:
            # A follow-up (e.g. the vendor re-sent the invoice with the missing PO number): it answers the
            # waiting intent, which resumes from its persisted steps; this source needs no run of its own.
            row.update(state=IntentState.COMPLETED, reason=answered)
    return store.register(**row)


def content_row(wf: Workflow, path: Path, content: bytes,
                parse: Callable[[str, bytes], BaseModel]) -> tuple[dict[str, Any], Any]:
    """The intent a file's bytes register as (IntentStore.register's arguments), and the parsed intake
    as JSON data; None for bytes the parser refused, whose intent is rejected_input with the reason and
    a preview. A follow-up answering a waiting intent (answer_waiting) is the caller's to decide."""
    intent_id = file_intent_id(wf.name, content)
    try:
        intake = parse(path.name, content)
    except Exception as exc:  # noqa: BLE001 - any parser failure is this file's problem, not the sensor's
        if is_transient(exc):
            raise
        preview = content[:2000].decode("utf-8", errors="replace")
        return dict(intent_id=intent_id, workflow=wf.name, correlation_id=path.name[:200], source_ref=str(path),
                    source_digest=digest(content), intake={"source_name": path.name, "preview": preview},
                    state=IntentState.REJECTED_INPUT, reason=parse_failure(exc)), None
    data: Any = json.loads(intake.model_dump_json())
    return dict(intent_id=intent_id, workflow=wf.name, correlation_id=correlation_of(intake, path),
                source_ref=str(path), source_digest=digest(content), intake=data), data


def parse_failure(exc: Exception) -> str:
    """A parser's ValueError is a reason written for people; anything else is named by its type."""
    source, reason = getattr(exc, "source_name", ""), getattr(exc, "reason", "")
    if isinstance(exc, ValueError) and source and reason:  # a ParseError: a long file name is cut
        return f"unreadable input: {shown_id(source)}: {reason}"[:1000]
    if isinstance(exc, ValueError):
        return f"unreadable input: {exc}"[:1000]
    return f"unreadable input: the parser raised {type(exc).__name__}: {exc}"[:1000]


def find_intent(store: IntentStore, intent_id: str) -> Intent | None:
    try:
        return store.get(intent_id)
    except KeyError:
        return None


def waiting_correlations(db: Database, workflow: str, correlations: set[str]) -> set[str]:
    """Which of `correlations` an intent of `workflow` waits for input under (answer_waiting's candidates),
    in one statement."""
    if not correlations:
        return set()
    with db.connect() as conn:
        return set(conn.execute(_WAITING, {"p_wf": workflow, "p_state": str(IntentState.WAITING_FOR_INPUT),
                                           "p_corr": list(correlations)}).scalars())


_WAITING = (select(intents.c.correlation_id).distinct()
            .where(intents.c.workflow == bindparam("p_wf"), intents.c.state == bindparam("p_state"),
                   intents.c.correlation_id.in_(bindparam("p_corr", expanding=True))))


def answer_waiting(store: IntentStore, wf: Workflow, correlation: str, data: dict[str, Any], source: str,
                   *, own_intent_id: str) -> str | None:
    """If an intent with the same correlation waits for a field this source supplies, answer it. The
    source's own intent (same content) is never a candidate: it cannot answer its own question."""
    for waiting in store.waiting_for_input(wf.name, correlation):
        if waiting.intent_id == own_intent_id:
            continue
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


# -- launching ----------------------------------------------------------------------------------------
def run_request(db: Database, wf: Workflow, intent: Intent, model: str) -> dg.RunRequest:
    """The intent's one run (run_key = intent id), pinned to the workflow's current mode."""
    return dg.RunRequest(run_key=intent.intent_id, job_name=wf.name, run_config=run_config(wf, intent.intent_id),
                         tags=launch_tags(db, wf, intent.intent_id, model=model))


_UNFINISHED = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED]


def runs_in_flight(instance: dg.DagsterInstance, wf: Workflow) -> int:
    """The workflow's runs (either shape) queued or running: the backlog adaptive batching looks at."""
    return sum(instance.get_runs_count(dg.RunsFilter(job_name=job, statuses=_UNFINISHED))
               for job in (wf.name, f"{wf.name}__batch"))


def launch_requests(db: Database, wf: Workflow, new: list[Intent], model: str, max_batch: int,
                    min_batch: int = 8, batched: bool = True, in_flight: int = 0) -> list[dg.RunRequest]:
    """Adaptive batching: what a tick found is launched as one run per intent while it is a trickle
    (fewer than `min_batch` intents, and none of the workflow's runs still queued or running: each
    starts at once, on its own), else as batch runs of up to `max_batch` intents, in arrival order (a
    flood, or arrivals faster than runs finish: Dagster's per-run costs, a process start each on the
    daemon, are paid once per batch instead of piling up in the run queue).
    A batch's run_key is a digest of its intent ids, so the same batch is never launched twice. If a
    batch run never starts, its intents stay `received` without a claim and the recovery sweeper
    launches them one by one after a lease: an unlaunched intent is never lost."""
    trickle = len(new) < max(2, min_batch) and (in_flight == 0 or len(new) < 2)
    if trickle or not batched:  # not batched: a sensor built without the batch job
        return [run_request(db, wf, i, model) for i in new]
    out = []
    for start in range(0, len(new), max_batch):
        ids = [i.intent_id for i in new[start:start + max_batch]]
        tags = {k: v for k, v in launch_tags(db, wf, ids[0], model=model).items() if k != f"{TAG}/intent_id"}
        out.append(dg.RunRequest(run_key="batch:" + digest("\n".join(sorted(ids)))[:32], job_name=f"{wf.name}__batch",
                                 run_config=batch_run_config(wf, ids, chunk_size=max_batch),
                                 tags={**tags, f"{TAG}/shape": "batch", f"{TAG}/batch_size": str(len(ids))}))
    return out


# The daemon's sensor loop comes round about every 5 s; an interval at or below that evaluates a sensor on
# every pass (a larger one only adds latency: a file dropped waits for the next evaluation).
TRIGGER_INTERVAL_S = 1


def launch_stopped(db: Database, workflow: str) -> dg.SkipReason | None:
    """Every launching sensor asks this first: a global or workflow kill switch stops new runs (the
    sensor leaves its cursor where it is, so nothing it has not seen is lost)."""
    engaged = controls.launch_blocked(db, workflow)
    return dg.SkipReason(f"{workflow}: not launching, {engaged.describe()}") if engaged else None


# -- sensor cursors in our database -------------------------------------------------------------------
def load_cursor(db: Database, sensor: str) -> str | None:
    """The sensor's cursor as stored next to the intents: `tick` and the daemon share it, unlike
    Dagster's per-instance cursor."""
    with db.connect() as conn:
        return conn.execute(select(sensor_cursors.c.cursor).where(sensor_cursors.c.sensor == sensor)).scalar()


def save_cursor(db: Database, sensor: str, cursor: str) -> None:
    row = {"sensor": sensor, "cursor": cursor, "updated_at": utcnow()}
    db.transaction(lambda conn: upsert(conn, sensor_cursors, row, ["sensor"]))


# -- record sensors: follow a table by its autoincrement `seq` ---------------------------------------
RECORD_BATCH = 1000  # rows per tick (~1-3 ms each): keeps a tick well inside the sensor gRPC timeout


class SeqCursor(BaseModel):
    """A record sensor's cursor: the highest `seq` handled. Each row is read once however often the
    sensor ticks; a lost cursor only re-registers intents that already exist (same record and version)."""

    last_seq: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "SeqCursor":
        return cls.model_validate_json(raw) if raw else cls()


UNREADABLE = "__unreadable__"  # set in a row read as text because a column would not decode: the reason


class UnreadableRow(ValueError):
    """A row whose stored values cannot be decoded (JSON with a 5,000-digit number or nested 100,000
    deep, a date SQLite holds as arbitrary text)."""


def read_rows(db: Database, table: Table, after_seq: int, limit: int = RECORD_BATCH) -> list[dict[str, Any]]:
    """Raw rows after `after_seq`, oldest first: building the intake is left to the caller, per row, so
    one row that cannot be built does not take the others with it. A row whose columns cannot even be
    decoded is read again as text and marked (UNREADABLE): it is rejected, it never stops the batch."""
    where = table.c.seq > after_seq
    with db.connect() as conn:
        try:
            rows = conn.execute(select(table).where(where).order_by(table.c.seq).limit(limit)).mappings().all()
            return [dict(r) for r in rows]
        except Exception as exc:  # noqa: BLE001 - decoding failed for some row: read them one by one
            if is_transient(exc):
                raise
        seqs = conn.execute(select(table.c.seq).where(where).order_by(table.c.seq).limit(limit)).scalars().all()
        return [_read_one(conn, table, seq) for seq in seqs]


def _read_one(conn: Any, table: Table, seq: int) -> dict[str, Any]:
    try:
        return dict(conn.execute(select(table).where(table.c.seq == seq)).mappings().one())
    except Exception as exc:  # noqa: BLE001 - this row's values do not decode: keep them as text
        if is_transient(exc):
            raise
        as_text = [cast(c, Text).label(c.name) for c in table.columns]
        raw = dict(conn.execute(select(*as_text).where(table.c.seq == seq)).mappings().one())
        problem = f"{type(exc).__name__}: {exc}"[:300]
        return raw | {"seq": seq, UNREADABLE: f"a stored value cannot be decoded ({problem})"}


SHOWN_ID_CHARS = 80


def shown_id(record_id: Any) -> str:
    """A record id as reasons and logs show it: a long one (a 2 KB Message-ID) is cut, so the reason
    after it is still read."""
    text = str(record_id)
    if len(text) <= SHOWN_ID_CHARS:
        return text
    return f"{text[:SHOWN_ID_CHARS - 20]}...({len(text):,} chars)"


def reject_row(store: IntentStore, wf: Workflow, table: Table, id_column: str, row: Mapping[str, Any],
               exc: Exception) -> tuple[Intent, bool]:
    """Record a row that could not become an intake as rejected_input, under the identity it would have
    had (record id and version), with the raw row as evidence."""
    record_id, version = row.get(id_column), row.get("version", 1)
    raw: Any = json.loads(json.dumps(dict(row), default=str))
    return store.register(
        intent_id=record_intent_id(wf.name, str(record_id), version), workflow=wf.name,
        correlation_id=str(record_id)[:200], source_ref=f"{table.name}:{record_id}@{version}",
        source_digest=digest(json.dumps(raw, sort_keys=True)), intake={"raw": raw},
        state=IntentState.REJECTED_INPUT,
        reason=f"unreadable {table.name} row {shown_id(record_id)}@{shown_id(version)}: "
               f"{type(exc).__name__}: {exc}"[:1000])


def build_record_sensor(wf: Workflow, jobs: list[dg.JobDefinition], *, name: str, noun: str, table: Table, id_column: str,
                        to_intake: Callable[[Mapping[str, Any]], BaseModel],
                        register: Callable[[IntentStore, Workflow, Any], tuple[Intent, bool]],
                        description: str) -> dg.SensorDefinition:
    """One intent and one run (run_key = intent id) per new row of `table`; `register` records a row it
    cannot act on as rejected_input with a reason, and a row that fails to build or register is recorded
    the same way. Sensors only read the system of record and write intents."""

    def register_row(store: IntentStore, row: Mapping[str, Any]) -> Intent:
        if UNREADABLE in row:
            evidence = {k: v for k, v in row.items() if k != UNREADABLE}
            return reject_row(store, wf, table, id_column, evidence, UnreadableRow(row[UNREADABLE]))[0]
        try:
            return register(store, wf, to_intake(row))[0]
        except Exception as exc:  # noqa: BLE001 - one bad row is recorded; the next rows still run
            if is_transient(exc):
                raise
            return reject_row(store, wf, table, id_column, row, exc)[0]

    @dg.sensor(name=name, jobs=jobs, minimum_interval_seconds=TRIGGER_INTERVAL_S,
               default_status=dg.DefaultSensorStatus.RUNNING, description=description)
    def record_sensor(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        if stopped := launch_stopped(runtime.db, wf.name):
            return stopped
        # Our table, not context.cursor, is the truth: `tick` and the daemon see the same position.
        cursor = SeqCursor.parse(load_cursor(runtime.db, name))
        rows = read_rows(runtime.db, table, cursor.last_seq)
        if not rows:
            return dg.SkipReason(f"no {noun}s after seq {cursor.last_seq}")
        store = IntentStore(runtime.db)
        model = runtime.proposer().model_name
        launch: dict[str, Intent] = {}
        rejected, last_seq = 0, cursor.last_seq
        for row in rows:
            ref = f"{shown_id(row.get(id_column))}@{shown_id(row.get('version', 1))}"
            try:
                intent = register_row(store, row)
            except Exception as exc:  # noqa: BLE001 - transient: retry the row; else move past it
                if is_transient(exc):
                    # The cursor stays before this row, so it is retried on the next tick.
                    context.log.error(f"{noun} {ref} (seq {row['seq']}): {type(exc).__name__}: {exc}; "
                                      f"stopping this tick, it is retried on the next one")
                    break
                # Even recording the rejection failed (a value the database refuses): say so, move on.
                context.log.error(f"{noun} {ref} (seq {row['seq']}) could not be registered or rejected: "
                                  f"{type(exc).__name__}: {exc}")
                last_seq = row["seq"]
                continue
            last_seq = row["seq"]
            if intent.state == IntentState.REJECTED_INPUT:
                rejected += 1
                context.log.info(f"{ref}: {intent.reason}")
            elif not intent.is_terminal:
                launch[intent.intent_id] = intent
        requests = launch_requests(runtime.db, wf, list(launch.values()), model, runtime.batch_max_size,
                                   runtime.batch_min_size, batched=len(jobs) > 1,
                                   in_flight=runs_in_flight(context.instance, wf) if len(launch) > 1 else 0)
        if last_seq != cursor.last_seq:
            save_cursor(runtime.db, name, SeqCursor(last_seq=last_seq).model_dump_json())
        context.log.info(f"{len(rows)} {noun}(s) read, up to seq {last_seq}: {len(launch)} intent(s) in "
                         f"{len(requests)} run request(s), {rejected} rejected")
        return dg.SensorResult(run_requests=requests,
                               cursor=SeqCursor(last_seq=last_seq).model_dump_json())

    return record_sensor
