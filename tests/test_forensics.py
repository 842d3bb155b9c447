"""Forensics: trace payloads past the retention setting are purged by the daily job, which keeps the write
ledger and the audit chain and chains its own record; every read of a trace through the CLI or the
console is logged (who, which intent and run, when, through what)."""

import getpass
import json
from datetime import timedelta

import dagster as dg
from sqlalchemy import func, select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from agent_pipelines.cli import app
from agent_pipelines.console.app import create_app
from agent_pipelines.framework import access, audit, reviewers
from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.tables import (
    approval_events,
    intent_steps,
    intent_transitions,
    intents,
    llm_calls,
    policy_decisions,
    tool_calls,
    writes,
)
from agent_pipelines.project import Project
from agent_pipelines.settings import Settings
from tests.console.conftest import login
from tests.helpers import intake, register, run_intent, state
from tests.test_approvals import waiting

TRACE = (tool_calls, llm_calls, policy_decisions)


def _age(project: Project, intent_id: str, days: float, *, trace: bool = True) -> None:
    """Make an intent's rows `days` old (its trace rows too unless trace=False)."""
    then = utcnow() - timedelta(days=days)
    with project.db.begin() as conn:
        conn.execute(update(intents).where(intents.c.intent_id == intent_id).values(updated_at=then))
        conn.execute(update(intent_steps).where(intent_steps.c.intent_id == intent_id).values(at=then))
        conn.execute(update(writes).where(writes.c.intent_id == intent_id).values(at=then))
        if trace:
            for t in TRACE:
                conn.execute(update(t).where(t.c.intent_id == intent_id).values(at=then))


def _rows(project: Project, table, intent_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return [dict(r) for r in conn.execute(select(table).where(table.c.intent_id == intent_id)
                                              .order_by(*table.primary_key.columns)).mappings()]


def _purge(seeded: Project, days: str):  # type: ignore[no-untyped-def]
    """The trace_retention job of the code location, in-process, with AGENT_PIPELINES_TRACE_RETENTION_DAYS."""
    env = {"AGENT_PIPELINES_DB_URL": seeded.settings.db_url, "AGENT_PIPELINES_TRACE_RETENTION_DAYS": days}
    p = Project(Settings.from_env(seeded.settings.state_dir, env=env))
    result = p.definitions.get_job_def("trace_retention").execute_in_process(instance=seeded.instance)
    assert result.success
    with seeded.db.connect() as conn:
        return conn.execute(select(approval_events).order_by(approval_events.c.seq.desc()).limit(1)).mappings().one()


def test_retention_purges_old_payloads_keeps_the_ledger_and_chains_a_record(seeded):
    old = register(seeded, intake())  # completes: 3 writes
    pending = register(seeded, intake(source_name="b.json", invoice_number="INV-B", total_cents=120_000))
    assert run_intent(seeded, old).success and run_intent(seeded, pending).success
    assert (state(seeded, old), state(seeded, pending)) == ("completed", "waiting_for_approval")
    _age(seeded, old, 40)
    _age(seeded, pending, 40, trace=False)  # an old intent, still waiting: recent trace, intake kept
    ledger_before = _rows(seeded, writes, old)
    counts = {t.name: len(_rows(seeded, t, old)) for t in TRACE}
    steps_old = len(_rows(seeded, intent_steps, old))
    assert len(ledger_before) == 3 and all(counts.values()) and steps_old

    event = _purge(seeded, "30")  # 40 days > 30: purged (the default, 90, would keep them)

    for row in _rows(seeded, tool_calls, old):
        assert (row["params"], row["result"], row["error"]) == (None, None, None)
        assert row["tool"] and row["status"] == "ok" and row["latency_ms"] >= 0  # metrics stay
    for row in _rows(seeded, llm_calls, old):
        assert row["output"] is None and row["model"] == "offline-rules"
    assert all(r["observed"] is None for r in _rows(seeded, policy_decisions, old))
    [old_intent] = _rows(seeded, intents, old)
    assert old_intent["intake"] is None and old_intent["state"] == "completed"
    assert _rows(seeded, intent_steps, old) == []
    assert _rows(seeded, writes, old) == ledger_before  # the write ledger, untouched
    assert len(_rows(seeded, intent_transitions, old)) > 0

    assert all(r["params"] is not None for r in _rows(seeded, tool_calls, pending))  # recent trace kept
    [waiting_intent] = _rows(seeded, intents, pending)
    assert waiting_intent["intake"]["invoice_number"] == "INV-B"  # not settled: intake kept
    assert _rows(seeded, intent_steps, pending)

    assert event["kind"] == "retention_purged" and event["approval_id"] is None
    assert event["payload"]["retention_days"] == 30
    assert event["payload"]["purged"] == {**counts, "intents.intake": 1, "intent_steps": steps_old,
                                          "parked_intents.carry": 0}
    assert audit.verify(seeded.db, seeded.approval_key).intact

    again = _purge(seeded, "30")  # nothing left to purge, and that is recorded too
    assert again["seq"] == event["seq"] + 1 and set(again["payload"]["purged"].values()) == {0}
    assert audit.verify(seeded.db, seeded.approval_key).intact


def test_the_retention_job_is_scheduled_daily(project):
    [schedule] = [s for s in project.definitions.schedules if s.name == "trace_retention__daily"]
    assert schedule.job_name == "trace_retention" and schedule.cron_schedule == "15 3 * * *"
    assert str(schedule.default_status) == str(dg.DefaultScheduleStatus.RUNNING)
    assert project.settings.trace_retention_days == 90


def test_reads_through_the_cli_are_logged(seeded, monkeypatch):
    intent_id, approval_id = waiting(seeded)
    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", seeded.settings.db_url)
    monkeypatch.delenv(reviewers.TOKEN_ENV, raising=False)
    state_dir = ["--state-dir", str(seeded.settings.state_dir)]
    assert access.reads(seeded.db) == []

    shown = CliRunner().invoke(app, ["trace", "show", intent_id, "--json", *state_dir])
    assert shown.exit_code == 0, shown.output
    trace = json.loads(shown.output)
    assert trace["intent"]["state"] == "waiting_for_approval" and trace["tool_calls"] and trace["llm_calls"]
    run_id = trace["tool_calls"][0]["run_id"]
    [read] = access.reads(seeded.db)
    assert (read["actor"], read["via"], read["what"], read["intent_id"], read["run_id"]) == \
        (f"cli:{getpass.getuser()}", "cli", "trace show", intent_id, None)

    _, token = reviewers.add(seeded.db, seeded.approval_key, "alice")
    monkeypatch.setenv(reviewers.TOKEN_ENV, token)
    by_run = CliRunner().invoke(app, ["trace", "show", "--run", run_id, "--json", *state_dir])
    assert by_run.exit_code == 0 and json.loads(by_run.output)["tool_calls"]
    assert CliRunner().invoke(app, ["approvals", "show", approval_id, "--json", *state_dir]).exit_code == 0
    newest = access.reads(seeded.db)[:2]
    assert [(r["actor"], r["what"], r["intent_id"], r["run_id"], r["approval_id"]) for r in newest] == [
        ("alice", "approvals show", intent_id, run_id, approval_id), ("alice", "trace show", None, run_id, None)]

    unknown = CliRunner().invoke(app, ["trace", "show", "invoice_matching:nope", *state_dir])
    assert unknown.exit_code == 1 and len(access.reads(seeded.db)) == 3  # nothing shown, nothing logged
    listed = CliRunner().invoke(app, ["trace", "access", intent_id, "--json", *state_dir])
    assert [r["what"] for r in json.loads(listed.output)["reads"]] == ["approvals show", "trace show"]


def test_reads_through_the_console_are_logged(seeded):
    intent_id, approval_id = waiting(seeded)
    _, token = reviewers.add(seeded.db, seeded.approval_key, "alice")
    client = TestClient(create_app(seeded, env={}), base_url="http://testserver", follow_redirects=False)
    assert client.get(f"/requests/{approval_id}").status_code == 303  # not signed in: nothing shown
    assert access.reads(seeded.db) == []
    login(client, token)
    page = client.get(f"/requests/{approval_id}")
    assert page.status_code == 200 and approval_id in page.text
    [read] = access.reads(seeded.db)
    with seeded.db.connect() as conn:
        run_id = conn.execute(select(func.max(tool_calls.c.run_id)).where(tool_calls.c.intent_id == intent_id)
                              ).scalar_one()
    assert (read["actor"], read["via"], read["what"], read["intent_id"], read["run_id"], read["approval_id"]) == \
        ("alice", "console", "request page", intent_id, run_id, approval_id)
    assert client.get("/").status_code == 200 and len(access.reads(seeded.db)) == 1  # the queue shows no trace
