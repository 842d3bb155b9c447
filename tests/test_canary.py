"""Canaries: secrets and PII planted in inputs and in tool responses, the workflows run through their
sensors (an approval's continuation included), and not one canary may appear in any sink of Dagster's
(the event log, every byte under $DAGSTER_HOME: step outputs, compute logs, SQLite run and event
storage with its compressed snapshots, schedules; each run's config and tags), in our trace tables or in
the CLI output. Step outputs live in our database (table step_outputs), which holds the intake as
received by design: the test checks the canaries went there instead."""

import json
import os
import sqlite3
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import create_engine, inspect, select
from typer.testing import CliRunner

from agent_pipelines.cli import app
from agent_pipelines.framework import reviewers
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.jobs import build_job, run_config, run_tags
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.tables import (
    control_events,
    escalations,
    intent_transitions,
    llm_calls,
    policy_decisions,
    shadow_writes,
    step_outputs,
    tool_calls,
    writes,
)
from agent_pipelines.settings import Settings
from agent_pipelines.workflows.ticket_intake import demo_data as ticket_demo
from agent_pipelines.workflows.ticket_intake.workflow import TicketIntake
from resources import build_resources
from resources.tickets import inbound_messages
from sensors.tickets import MessageCursor, read_new_messages, register_message
from tests.conftest import invoice_json
from tests.daemon.harness import REPO, stack, wait_until
from tests.llm_server import ScriptedLLM, serve
from tests.support import SUMMARY
from tests.test_ticket_workflow import add_message

# Planted in the inputs (an invoice memo, a ticket body) ...
SECRETS = {
    "openai_key": "sk-proj-Canary7q8Zt3LmX9vB2nR5wK7yH4jF6",
    "github_token": "ghp_Canary0123456789abcdefghijABCDEFGHIJ",
    "aws_key": "AKIAIOSFODNN7CANARY1",
    "url_password": "CanaryPassw0rd",
    "bearer": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlLWNhbmFyeQ",
}
PII = {
    "email": "canary.jones@privatemail.example",
    "phone": "+1 415-555-0199",
    "card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "ssn": "536-90-4399",
}
# ... and already in the system of record, so they come back in tool responses.
IN_TOOL_RESPONSES = {
    "vendor_iban": "DE89370400440532013000",     # the seeded vendor's payment account (schedule_payment reads it)
    "requester_email": "alice.chen@acme.example",  # find_requester returns the sender's record
}

TEXT = (f"Questions: {PII['email']} or {PII['phone']}. Card on file {PII['card']}, refunds to IBAN "
        f"{PII['iban']}, SSN {PII['ssn']}. ERP: postgresql://svc:{SECRETS['url_password']}@db.internal:5432/erp "
        f"key={SECRETS['openai_key']} token {SECRETS['github_token']} aws {SECRETS['aws_key']} "
        f"Authorization: Bearer {SECRETS['bearer']}")


def forms(value: str) -> set[str]:
    """A canary and its spacing variants (a card or IBAN may be logged without its spaces)."""
    return {value, value.replace(" ", ""), value.replace(" ", "-")}


CANARIES = {name: forms(v) for name, v in (SECRETS | PII | IN_TOOL_RESPONSES).items()}


def leaks(text: str) -> dict[str, list[str]]:
    return {name: sorted(v for v in variants if v in text) for name, variants in CANARIES.items()
            if any(v in text for v in variants)}


# Bytes on disk: UTF-8 (also what pickle and JSON write for these ASCII values) and UTF-16 either way.
BYTE_FORMS = {name: {v.encode(enc) for v in variants for enc in ("utf-8", "utf-16-le", "utf-16-be")}
              for name, variants in CANARIES.items()}


def byte_leaks(blob: bytes) -> dict[str, int]:
    return {name: sum(f in blob for f in forms) for name, forms in BYTE_FORMS.items() if any(f in blob for f in forms)}


def sqlite_values(path: Path) -> Iterator[bytes]:
    """Every value of every table of a Dagster SQLite file, zlib blobs (run and job snapshots)
    decompressed: a canary inside a compressed blob is not visible in the file's bytes."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite_master
                for value in row:
                    if isinstance(value, bytes):
                        try:
                            yield zlib.decompress(value)
                        except zlib.error:
                            yield value
                    elif isinstance(value, str):
                        yield value.encode()
    finally:
        conn.close()


def dagster_home_scan(home: Path) -> dict[str, int | dict[str, int]]:
    """A byte scan of every file under DAGSTER_HOME, and of every value of its SQLite databases."""
    files, size, values, compute_files, compute_bytes, found = 0, 0, 0, 0, 0, {}
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        files, size = files + 1, size + len(blob)
        if "compute_logs" in path.parts:
            compute_files, compute_bytes = compute_files + 1, compute_bytes + len(blob)
        parts = [blob]
        if blob.startswith(b"SQLite format 3\x00"):
            decoded = list(sqlite_values(path))
            values += len(decoded)
            parts += decoded
        for part in parts:
            for name, n in byte_leaks(part).items():
                found[f"{path.relative_to(home)}:{name}"] = found.get(f"{path.relative_to(home)}:{name}", 0) + n
    return {"files": files, "bytes": size, "sqlite_values": values, "compute_log_files": compute_files,
            "compute_log_bytes": compute_bytes, "leaks": found}


@pytest.fixture
def planted(seeded, drop, monkeypatch):  # type: ignore[no-untyped-def]
    # Runs log to the console at Dagster's default level (DEBUG), as a daemon-launched run worker does,
    # not `tick`'s quiet WARNING: every log line then also lands in the runs' compute logs.
    monkeypatch.setattr("agent_pipelines.runner.QUIET", {})
    # Our dagster.yaml turns compute-log capture off (throughput); a deployment may turn it on, so this
    # test captures them (Dagster's default manager) to scan that sink too.
    yaml_path = seeded.settings.dagster_home / "dagster.yaml"
    text = yaml_path.read_text()
    assert "NoOpComputeLogManager" in text and "instance" not in seeded.__dict__
    yaml_path.write_text(text.split("\ncompute_logs:")[0] + "\n" + text.split("NoOpComputeLogManager\n", 1)[1])
    with seeded.db.begin() as conn:
        ticket_demo.seed_system_of_record(conn)
        conn.execute(inbound_messages.insert().values(
            message_id="CANARY-1", sender=IN_TOOL_RESPONSES["requester_email"], subject="Invoice portal login fails",
            body=f"I cannot log in to the billing portal since Monday. {TEXT}",
            received_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC)))
    drop("canary-clean.json", invoice_json(memo=f"Thanks! {TEXT}"))
    drop("canary-big.json", invoice_json(invoice_number="INV-101", total="1,200.00", memo=TEXT,
                                         lines=[{"description": "Hex bolts M8", "sku": "BLT-8", "qty": 100,
                                                 "unit_price": "5.00"},
                                                {"description": f"Steel bracket {PII['email']}", "sku": "BRK-1",
                                                 "qty": 70, "unit_price": "10.00"}]))
    runs = [r for _ in range(3) for t in seeded.tick() for r in t.runs]
    assert runs and all(r.success for r in runs)
    return seeded


def test_planted_secrets_and_pii_reach_no_dagster_sink_no_trace_table_and_no_cli_output(planted, monkeypatch):
    project = planted
    assert "ssn" in CANARIES and PII["ssn"] in TEXT
    states = {i["source_ref"].rsplit("/", 1)[-1]: i["state"] for i in project.intents()}
    # the runs did real work with those inputs: a payment to the vendor's IBAN, a ticket, an approval
    assert "completed" in states.values() and "waiting_for_approval" in states.values(), states

    # 1. what the CLI prints (approving the pending change, whose continuation then runs)
    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", project.settings.db_url)
    runner = CliRunner()
    state_dir = ["--state-dir", str(project.settings.state_dir)]

    def cli(*args: str) -> str:
        result = runner.invoke(app, [*args, *state_dir])
        assert result.exit_code == 0, result.output
        return result.output

    pending = json.loads(cli("approvals", "list", "--json"))["pending"]
    assert pending
    outputs = [cli("status"), cli("status", "--json"), cli("approvals", "list"), cli("inputs", "list", "--json"),
               cli("killswitch", "status"), cli("mode", "show"), cli("shadow", "report")]
    outputs += [cli("approvals", "show", p["approval_id"], "--json") for p in pending]
    outputs += [cli("approvals", "show", p["approval_id"]) for p in pending]
    tokens = {name: reviewers.add(project.db, project.approval_key, name)[1] for name in ("alice", "bob")}
    for p in pending:
        for approver in ("alice", "bob")[:p["approvals_needed"]]:
            monkeypatch.setenv("AGENT_PIPELINES_REVIEWER_TOKEN", tokens[approver])
            outputs.append(cli("approvals", "approve", p["approval_id"]))
    cli_text = "\n".join(outputs)
    assert "approval_id" in cli_text
    continued = [r for t in project.tick() for r in t.runs]
    assert [r.job for r in continued] == ["invoice_matching__after_approval"] * len(pending)
    assert all(r.success for r in continued)
    assert "waiting_for_approval" not in {i["state"] for i in project.intents()}

    # 2. the Dagster event log of every run (messages, metadata, errors), serialized as stored
    instance = project.instance
    runs = instance.get_runs()
    event_log = "\n".join(dg.serialize_value(e) for r in runs for e in instance.all_logs(r.run_id))
    assert len(runs) >= 4 and "trace.tool_call" in event_log and "stored_in" in event_log

    # 3. each run's config and tags, as Dagster stores and shows them
    run_configs = "\n".join(json.dumps(r.run_config, default=str, sort_keys=True) for r in runs)
    tags = "\n".join(json.dumps(dict(r.tags), sort_keys=True) for r in runs)
    assert "intent_id" in run_configs and "approval_id" in run_configs and "agent_pipelines/intent_id" in tags

    # 4. every byte Dagster keeps on disk: step outputs (none any more), compute logs, run, event and
    # schedule storage (the instance in these tests keeps all of it in SQLite under DAGSTER_HOME)
    home = dagster_home_scan(project.settings.dagster_home)
    assert home["compute_log_files"] >= 3 * len(runs) and home["compute_log_bytes"] > 0  # logs were captured
    assert home["sqlite_values"] > 0

    # 5. our trace tables
    with project.db.connect() as conn:
        trace = "\n".join(json.dumps([dict(r) for r in conn.execute(select(t)).mappings()], default=str)
                          for t in (tool_calls, llm_calls, policy_decisions, intent_transitions, escalations, writes,
                                    shadow_writes, control_events))
        stored = conn.execute(select(step_outputs.c.payload)).scalars().all()
    assert "schedule_payment" in trace and "find_requester" in trace
    # The step outputs went to our database, as received (the workflow acts on them): the canaries are
    # there, which is where Dagster's filesystem pickles used to hold them.
    assert "ssn" in byte_leaks(b"".join(stored)) and "card" in byte_leaks(b"".join(stored))

    found = {"event log": leaks(event_log), "run config": leaks(run_configs), "tags": leaks(tags),
             "DAGSTER_HOME": home["leaks"], "trace tables": leaks(trace), "CLI": leaks(cli_text)}
    line = (f"canary: {len(CANARIES)} canaries (SSN included), {len(runs)} runs; sinks: "
          f"event_log={len(event_log)} chars, dagster_home_files={home['files']} ({home['bytes']} bytes, "
          f"{home['sqlite_values']} sqlite values decoded), compute_logs={home['compute_log_files']} files "
          f"({home['compute_log_bytes']} bytes), step_outputs(db)={len(stored)} rows (ours, raw by design), "
          f"run_config={len(run_configs)} chars, tags={len(tags)} chars, trace={len(trace)} chars, "
          f"cli={len(cli_text)} chars; leaks: {sum(len(v) for v in found.values())}")
    print(line)
    SUMMARY.append(line)  # in pytest's terminal summary too, whatever the capture settings
    assert found == {"event log": {}, "run config": {}, "tags": {}, "DAGSTER_HOME": {}, "trace tables": {},
                     "CLI": {}}


def postgres_values(url: str) -> Iterator[bytes]:
    """Every value of every table of Dagster's PostgreSQL storage, compressed snapshots decompressed."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.exec_driver_sql(f'SELECT * FROM "{table}"'):  # noqa: S608 - from the catalog
                    for value in row:
                        if isinstance(value, (bytes, memoryview)):
                            try:
                                yield zlib.decompress(bytes(value))
                            except zlib.error:
                                yield bytes(value)
                        elif value is not None:
                            yield (value if isinstance(value, str) else json.dumps(value, default=str)).encode()
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.pg_leg
def test_a_run_the_daemon_launches_leaves_no_canary_in_dagster_storage(tmp_path):
    """The production path: the real daemon's sensor launches the run in a run worker (its console at
    DEBUG into the compute logs), Dagster's storage is PostgreSQL, the step outputs go to our database."""
    name = "canary-daemon.json"
    with stack(REPO / "deploy" / "dagster.postgres.yaml", tmp_path / "state", n_pos=1) as s:
        s.start_daemon()
        s.drop(name, invoice_json(po_number="PO-B0000", memo=f"Thanks! {TEXT}"))

        def finished() -> list[dg.DagsterRun] | None:
            runs = s.project.instance.get_runs()
            done = s.intents_by_file().get(name, {}).get("state") == "completed"
            return runs if done and all(r.is_finished for r in runs) else None

        runs = wait_until("the daemon's run to finish the canary invoice", finished, timeout_s=150, every_s=0.5)
        s.stop("daemon")
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        run_configs = "\n".join(json.dumps(r.run_config, default=str, sort_keys=True) for r in runs)
        tags = "\n".join(json.dumps(dict(r.tags), sort_keys=True) for r in runs)
        storage = list(postgres_values(s.dagster_pg_url))
        home = dagster_home_scan(s.home)
        daemon_log = (s.state / "daemon.log").read_bytes()
        with s.project.db.connect() as conn:
            stored = conn.execute(select(step_outputs.c.payload)).scalars().all()
    assert "dagster/sensor_name" in tags and home["compute_log_bytes"] > 0
    assert b"trace.tool_call" in b"\n".join(storage)  # the scan read the run's event log
    assert "ssn" in byte_leaks(b"".join(stored))  # the intake went to our step_outputs, as received
    found = {"run config": leaks(run_configs), "tags": leaks(tags), "DAGSTER_HOME": home["leaks"],
             "dagster storage (PostgreSQL)": byte_leaks(b"\n".join(storage)), "daemon log": byte_leaks(daemon_log)}
    line = (f"canary (daemon): {len(CANARIES)} canaries (SSN included), {len(runs)} runs; sinks: "
            f"dagster_storage_pg={len(storage)} values, dagster_home_files={home['files']} ({home['bytes']} bytes), "
            f"compute_logs={home['compute_log_files']} files ({home['compute_log_bytes']} bytes), "
            f"step_outputs(db)={len(stored)} rows, run_config={len(run_configs)} chars, tags={len(tags)} chars, "
            f"daemon_log={len(daemon_log)} bytes; leaks: {sum(len(v) for v in found.values())}")
    print(line)
    SUMMARY.append(line)
    assert found == {"run config": {}, "tags": {}, "DAGSTER_HOME": {}, "dagster storage (PostgreSQL)": {},
                     "daemon log": {}}


def test_the_canaries_are_really_in_the_inputs_the_workflows_read(planted):
    """Guards the test above against passing vacuously: the raw inputs hold every canary."""
    project = planted
    inbox = "\n".join(p.read_text() for p in project.settings.invoice_inbox.iterdir())
    with project.db.connect() as conn:
        body = conn.execute(select(inbound_messages.c.body)).scalars().all()
        ledger_targets = conn.execute(select(writes.c.tool)).scalars().all()
    raw = inbox + "\n".join(body) + os.linesep
    for name in (*SECRETS, *PII):
        assert any(v in raw for v in CANARIES[name]), name
    assert "schedule_payment" in ledger_targets  # a write read the vendor's IBAN from the vendor master


def test_where_the_policy_says_so_the_model_sees_no_canary(seeded):
    """ticket_intake sets data_handling.redact_for_model: the prompt the provider receives is redacted."""
    wf = TicketIntake()
    assert wf.policy.data_handling.redact_for_model
    with seeded.db.begin() as conn:
        ticket_demo.seed_system_of_record(conn)
    intent_id = add_message(seeded, "CANARY-LLM", IN_TOOL_RESPONSES["requester_email"], "Portal login fails",
                            f"I cannot log in to the billing portal. {TEXT}")
    [msg] = read_new_messages(seeded.definitions.resources["runtime"], MessageCursor())
    register_message(IntentStore(seeded.db), wf, msg)
    reply = {"category": "account_access", "priority": "high", "product_id": None, "team_id": "ACCESS",
             "summary": "Cannot log in to the billing portal", "duplicate_of": None, "rationale": "login failure"}
    with serve(ScriptedLLM([reply])) as llm:
        env = {"AGENT_PIPELINES_DB_URL": seeded.settings.db_url, "AGENT_PIPELINES_LLM_PROVIDER": "openai",
               "AGENT_PIPELINES_LLM_MODEL": "gpt-4o-mini", "AGENT_PIPELINES_LLM_BASE_URL": llm.base_url}
        settings = Settings.from_env(seeded.settings.state_dir, env=env)
        result = build_job(wf).execute_in_process(
            run_config=run_config(wf, intent_id), instance=seeded.instance, resources=build_resources(settings),
            tags=run_tags(wf, intent_id, model="gpt-4o-mini"), raise_on_error=False)
    assert result.success and len(llm.requests) == 1
    sent = json.dumps(llm.requests)
    assert "BEGIN UNTRUSTED" in sent and "billing portal" in sent  # the message did reach the model ...
    assert leaks(sent) == {}  # ... without a secret or a piece of PII
    assert IntentStore(seeded.db).get(intent_id).state != IntentState.FAILED


def test_secrets_given_by_environment_reach_the_run_but_not_dagsters_storage(tmp_path, monkeypatch):
    """A value a resource gets in code is stored in Dagster's job snapshot; the LLM API key, a database
    password, the notification webhook URL and the SMTP password from the environment are passed as
    `EnvVar`, so the run reads them and Dagster stores only their names."""
    key, password = "sk-canary-llm-key-4f1d9a7c2b", "canary-db-password-9e2b"
    hook, smtp_password = "https://hooks.example/services/T0/B0/canaryhook5d3e", "canary-smtp-password-71c0"
    monkeypatch.setenv("AGENT_PIPELINES_LLM_API_KEY", key)
    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", f"postgresql://postgres:{password}@127.0.0.1:5432/never_opened")
    monkeypatch.setenv("AGENT_PIPELINES_NOTIFY_WEBHOOK_URL", hook)
    monkeypatch.setenv("AGENT_PIPELINES_SMTP_PASSWORD", smtp_password)
    resources = build_resources(Settings.from_env(tmp_path / "state"))
    seen: dict[str, str | None] = {}

    @dg.op
    def reads_its_secrets(runtime: AgentRuntime) -> None:  # opens no connection: only reads the settings
        seen.update(key=runtime.llm_api_key, url=runtime.db_url, hook=runtime.notify.webhook_url,
                    smtp=runtime.notify.smtp_password)

    @dg.job
    def secrets() -> None:
        reads_its_secrets()

    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = dg.Definitions(jobs=[secrets], resources={"runtime": resources["runtime"]}).get_job_def(
            "secrets").execute_in_process(instance=instance)
    assert result.success and seen == {"key": key, "url": os.environ["AGENT_PIPELINES_DB_URL"], "hook": hook,
                                       "smtp": smtp_password}
    blobs = [p.read_bytes() for p in home.rglob("*") if p.is_file()]
    blobs += [v for p in home.rglob("*.db") for v in sqlite_values(p)]
    secrets = [s.encode() for s in (key, password, hook, smtp_password)]
    assert blobs and not [b for b in blobs if any(s in b for s in secrets)]
