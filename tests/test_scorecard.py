"""The scorecard assets and their alerting checks, through real Dagster execution on the selected backend.

Two days of invoice_matching: a baseline day of real runs (a clean invoice proposed through the real
instructor client against the local OpenAI-compatible server, a vendor on hold, a large variance, an
unknown PO), then a bad day seeded through the framework's own functions (failing runs with escalations,
a duplicate ledger write, a looping tool call, doubled LLM spend, blocked policy decisions, an intent
nobody picked up). Rows are written at the wall clock and then moved, whole, to noon of two past days
(the day before yesterday and yesterday), so both partitions are complete days whatever the hour."""

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg
import pytest
from sqlalchemy import Table, select, update

from agent_pipelines.framework import approvals
from agent_pipelines.framework.db import aware, utcnow
from agent_pipelines.framework.intents import IntentStore, transition
from agent_pipelines.framework.scorecard import DayMetrics
from agent_pipelines.framework.scorecard_alerts import ScorecardThresholds, evaluate
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.tables import (
    approval_requests,
    escalations,
    input_requests,
    intent_transitions,
    intents,
    llm_calls,
    policy_decisions,
    tool_calls,
    writes,
)
from agent_pipelines.project import Project
from agent_pipelines.settings import Settings
from tests.helpers import intake, register, run_intent, state
from tests.support import QuietHandler, http_receiver
from tests.llm_server import ScriptedLLM, serve
from tests.test_llm_instructor import GOOD, llm_project

WF = "invoice_matching"
KEY = dg.AssetKey(["scorecard", WF])
CHECKS = {"no_duplicate_writes", "escalation_rate_spike", "token_spend_spike", "policy_blocks_rising"}
# Each table's rows move by the delta of their anchor column (the event's time), all timestamps alike.
MOVED: list[tuple[Table, str, str, tuple[str, ...]]] = [
    (intents, "intent_id", "created_at", ("created_at", "updated_at")),
    (intent_transitions, "id", "at", ("at",)),
    (writes, "id", "at", ("at",)),
    (tool_calls, "id", "at", ("at",)),
    (llm_calls, "id", "at", ("at",)),
    (policy_decisions, "id", "at", ("at",)),
    (escalations, "id", "at", ("at",)),
    (approval_requests, "approval_id", "created_at", ("created_at", "expires_at")),
    (input_requests, "request_id", "created_at", ("created_at", "expires_at")),
]


class AlertReceiver:
    """A webhook on 127.0.0.1 that records what is posted and answers with `status`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self.url = ""


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    rec = AlertReceiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            rec.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            rec.headers.append(dict(self.headers))
            self.send_response(rec.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with http_receiver(Handler) as url:
        rec.url = f"{url}/hooks/alerts"
        yield rec


def move_rows(project: Project, since: datetime, to: datetime) -> None:
    """Move every row whose event happened at or after `since` by (to - since)."""
    delta = to - since
    with project.db.begin() as conn:
        for table, pk, anchor, cols in MOVED:
            rows = conn.execute(select(table.c[pk], *(table.c[c] for c in cols))
                                .where(table.c[anchor] >= since)).mappings().all()
            for row in rows:
                conn.execute(update(table).where(table.c[pk] == row[pk])
                             .values({c: aware(row[c]) + delta for c in cols if row[c] is not None}))


def baseline(seeded: Project) -> dict[str, str]:
    """Real runs: completed through instructor, denied, waiting for approval, waiting for input."""
    ids = {"clean": register(seeded, intake()),
           "on_hold": register(seeded, intake(vendor_ref="V-2", po_number="PO-2", total_cents=50_000, lines=(
               intake().lines[0].model_copy(update={"sku": "X", "description": "Widget", "quantity": 10,
                                                    "unit_price_cents": 5000, "amount_cents": 50_000}),))),
           "variance": register(seeded, intake(invoice_number="INV-200", total_cents=120_000)),
           "unknown_po": register(seeded, intake(invoice_number="INV-300", po_number="PO-404"))}
    with serve(ScriptedLLM([GOOD])) as llm:
        assert run_intent(llm_project(seeded, llm.base_url), ids["clean"]).success
    for name in ("on_hold", "variance", "unknown_po"):
        assert run_intent(seeded, ids[name]).success
    assert [state(seeded, i) for i in ids.values()] == ["completed", "denied", "waiting_for_approval",
                                                        "waiting_for_input"]
    return ids


def bad_day(seeded: Project, clean_intent: str) -> None:
    """Seeded through the framework's functions: 6 intents whose runs fail and escalate (one of them
    loops on a tool call), 1 intent never picked up, a duplicate of a committed write, 4 costly LLM
    calls, 5 blocked and 1 allowed policy decision."""
    store, now = IntentStore(seeded.db), utcnow()
    failing = [f"bad-{n}" for n in range(6)]
    for intent_id in [*failing, "never-run"]:
        store.register(intent_id=intent_id, workflow=WF, correlation_id=intent_id, source_ref=f"seed:{intent_id}",
                       source_digest="0" * 64, intake={"seed": intent_id})
    with seeded.db.begin() as conn:
        for n, intent_id in enumerate(failing):
            run = f"run-bad-{n}"
            transition(conn, intent_id, S.RUNNING, run_id=run)
            transition(conn, intent_id, S.NEEDS_ATTENTION, reason="seeded fault", run_id=run)
            approvals.escalate(conn, "run_failed", run, intent_id, f"run {run} failed")
        conn.execute(tool_calls.insert(), [{
            "run_id": "run-bad-0", "intent_id": "bad-0", "workflow": WF, "tool": "get_purchase_order", "kind": "read",
            "impact": "low", "params": {"po_number": "PO-1"}, "status": "ok", "call_digest": "d" * 64, "attempts": 1,
            "latency_ms": 1.0, "at": now}] * 3)
        first = conn.execute(select(writes).where(writes.c.intent_id == clean_intent).order_by(writes.c.id)) \
            .mappings().first()
        assert first is not None
        conn.execute(writes.insert().values({**{k: v for k, v in first.items() if k != "id"},
                                             "idempotency_key": "x" * 64, "run_id": "run-dup", "at": now}))
        conn.execute(llm_calls.insert(), [{
            "run_id": f"run-bad-{n}", "intent_id": f"bad-{n}", "workflow": WF, "provider": "openai",
            "model": "gpt-4o-mini", "prompt_version": "invoice_match.v1", "attempts": 3, "prompt_tokens": 4_000,
            "completion_tokens": 1_000, "cost_usd": 0.0125, "at": now} for n in range(4)])
        conn.execute(policy_decisions.insert(), [{
            "run_id": f"run-bad-{n}", "intent_id": f"bad-{n}", "workflow": WF, "policy_digest": "p" * 64,
            "subject": "proposal", "decision": "deny" if n < 5 else "allow", "rule": "vendor_not_active", "at": now}
            for n in range(6)])


def alerting_project(seeded: Project, url: str) -> Project:
    env = {"AGENT_PIPELINES_DB_URL": seeded.settings.db_url, "AGENT_PIPELINES_ALERT_WEBHOOK_URL": url,
           "AGENT_PIPELINES_ALERT_TIMEOUT_SECONDS": "5"}
    p = Project(Settings.from_env(seeded.settings.state_dir, env=env))
    p.__dict__["instance"] = seeded.instance
    return p


def materialize(project: Project, day: date) -> tuple[dict[str, Any], dict[str, dg.AssetCheckEvaluation]]:
    """The definitions' scorecard job for one day: the workflow's figures and its check evaluations."""
    result = project.definitions.resolve_job_def("scorecard").execute_in_process(
        partition_key=day.isoformat(), instance=project.instance)
    assert result.success
    [mat] = [m for m in result.get_asset_materialization_events()
             if m.materialization.asset_key == KEY]
    figures = {k: v.value for k, v in mat.materialization.metadata.items()}
    checks = {c.check_name: c for c in result.get_asset_check_evaluations() if c.asset_key == KEY}
    assert set(checks) == CHECKS
    return figures, checks


@pytest.mark.timeout(600)
def test_scorecard_figures_and_checks_fire_on_a_seeded_spike(seeded, receiver, capsys):
    today = utcnow().date()
    base_day, bad = today - timedelta(days=2), today - timedelta(days=1)
    started = utcnow()
    ids = baseline(seeded)
    move_rows(seeded, started, datetime.combine(base_day, time(12), tzinfo=UTC))
    started = utcnow()
    bad_day(seeded, ids["clean"])
    move_rows(seeded, started, datetime.combine(bad, time(12), tzinfo=UTC))
    project = alerting_project(seeded, receiver.url)

    base, base_checks = materialize(project, base_day)
    assert {k: base[k] for k in ("intents", "runs", "failed_runs", "completed", "writes", "duplicate_writes",
                                 "retry_loops", "reviews", "llm_calls", "tokens", "escalations", "queue_depth",
                                 "stranded")} == {
        "intents": 4, "runs": 4, "failed_runs": 0, "completed": 1, "writes": 3, "duplicate_writes": 0,
        "retry_loops": 0, "reviews": 1, "llm_calls": 4, "tokens": 460, "escalations": 0, "queue_depth": 2,
        "stranded": 0}
    assert base["run_success_rate"] == 1.0 and base["human_review_rate"] == 0.25
    assert base["duplicate_write_rate"] == 0.0 and base["escalation_rate"] == 0.0
    assert base["cost_usd"] == pytest.approx(400 * 0.15e-6 + 60 * 0.60e-6)  # one gpt-4o-mini call; the offline proposals cost 0
    assert base["cost_per_success_usd"] == pytest.approx(base["cost_usd"])
    assert base["cost_per_run_usd"] == pytest.approx(base["cost_usd"] / 4)
    assert 0 <= base["time_to_complete_p50_s"] <= base["time_to_complete_p95_s"]
    assert base["policy_decisions"] >= 3 and base["policy_blocks"] >= 1
    assert all(c.passed for c in base_checks.values()), {n: c.description for n, c in base_checks.items()}
    assert receiver.posts == []

    spike, spike_checks = materialize(project, bad)
    assert {k: spike[k] for k in ("intents", "runs", "failed_runs", "completed", "writes", "duplicate_writes",
                                  "retry_loops", "reviews", "llm_calls", "tokens", "policy_decisions",
                                  "policy_blocks", "escalations", "queue_depth", "stranded")} == {
        "intents": 7, "runs": 6, "failed_runs": 6, "completed": 0, "writes": 1, "duplicate_writes": 1,
        "retry_loops": 1, "reviews": 0, "llm_calls": 4, "tokens": 20_000, "policy_decisions": 6,
        "policy_blocks": 5, "escalations": 6, "queue_depth": 2 + 6 + 1, "stranded": 1}
    assert spike["run_success_rate"] == 0.0 and spike["duplicate_write_rate"] == 1.0
    assert spike["escalation_rate"] == pytest.approx(6 / 7) and spike["cost_usd"] == pytest.approx(0.05)
    assert "cost_per_success_usd" not in spike and "time_to_complete_p50_s" not in spike  # nothing completed
    assert {n for n, c in spike_checks.items() if not c.passed} == CHECKS
    assert spike_checks["no_duplicate_writes"].severity == dg.AssetCheckSeverity.ERROR
    assert spike_checks["escalation_rate_spike"].severity == dg.AssetCheckSeverity.WARN
    assert {c.metadata["alert"].value for c in spike_checks.values()} == {"sent"}

    # one Slack-compatible message per failed check, naming it, the workflow and the day
    assert len(receiver.posts) == 4
    for name in CHECKS:
        [post] = [p for p in receiver.posts if f"Scorecard check {name} failed" in p["text"]]
        assert WF in post["text"] and bad.isoformat() in post["text"]
        assert post["blocks"][0]["type"] == "section" and name in post["blocks"][0]["text"]["text"]
    assert all(h["Idempotency-Key"].startswith("alr-") for h in receiver.headers)
    with capsys.disabled():
        print(f"\nscorecard {WF} {base_day}: {json.dumps(base, sort_keys=True)}")
        print(f"scorecard {WF} {bad}: {json.dumps(spike, sort_keys=True)}")

    # The webhook failing: the checks still report (failed, not errored) and the failure is recorded.
    receiver.status = 500
    _, again = materialize(project, bad)
    assert {n for n, c in again.items() if not c.passed} == CHECKS
    assert all(c.metadata["alert"].value == "failed: HTTP 500 from the webhook" for c in again.values())
    with seeded.db.connect() as conn:
        failed = conn.execute(select(escalations).where(escalations.c.kind == "alert_failed")).mappings().all()
    assert len(failed) == 4 and all(r["intent_id"] is None and "HTTP 500" in r["message"] for r in failed)
    assert len(receiver.posts) == 8  # each attempt reached the receiver once, none retried in the step


def test_definitions_list_the_scorecard_assets_checks_and_schedule(project, monkeypatch):
    from agent_pipelines.definitions import defs

    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", project.settings.db_url)
    monkeypatch.setenv("AGENT_PIPELINES_STATE_DIR", str(project.settings.state_dir))
    loaded = defs()
    graph = loaded.resolve_asset_graph()
    workflows = {"invoice_matching", "ticket_intake", "access_offboarding", "crm_hygiene"}
    assert {k for k in graph.get_all_asset_keys() if k.path[0] == "scorecard"} == {
        dg.AssetKey(["scorecard", w]) for w in workflows}
    assert {(k.asset_key.path[1], k.name) for k in graph.asset_check_keys if k.asset_key.path[0] == "scorecard"} == {
        (w, c) for w in workflows for c in CHECKS}
    schedule = loaded.resolve_schedule_def("scorecard__daily")
    assert schedule.job_name == "scorecard" and schedule.cron_schedule == "20 0 * * *"
    # the schedule asks for yesterday's complete day
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 5, 0, 20, tzinfo=UTC),
                                   repository_def=loaded.get_repository_def()) as ctx:
        [request] = schedule.evaluate_tick(ctx).run_requests or []
    assert request.partition_key == "2026-03-04"


@pytest.mark.timeout(600)
def test_the_demo_day_on_the_scorecard(project, monkeypatch, capsys):
    """The README's demo (real batch runs of the three workflows), moved to yesterday noon: each
    workflow's scorecard agrees with the intents' states, and no check fires on a first day."""
    from typer.testing import CliRunner

    from agent_pipelines.cli import app

    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", project.settings.db_url)
    started, day = utcnow(), utcnow().date() - timedelta(days=1)
    result = CliRunner().invoke(app, ["demo", "--state-dir", str(project.settings.state_dir), "--json"])
    assert result.exit_code == 0, result.output
    move_rows(project, started, datetime.combine(day, time(12), tzinfo=UTC))
    states = project.status().by_workflow
    run = project.definitions.resolve_job_def("scorecard").execute_in_process(
        partition_key=day.isoformat(), instance=project.instance)
    assert run.success
    figures = {m.materialization.asset_key.path[1]: {k: v.value for k, v in m.materialization.metadata.items()}
               for m in run.get_asset_materialization_events()}
    for wf, counts in states.items():
        f = figures[wf]
        waiting = counts.get("waiting_for_approval", 0) + counts.get("waiting_for_input", 0)
        assert (f["intents"], f["completed"], f["reviews"], f["queue_depth"]) == (
            sum(counts.values()), counts.get("completed", 0), counts.get("waiting_for_approval", 0), waiting), wf
        assert (f["failed_runs"], f["duplicate_writes"], f["escalations"], f["stranded"]) == (0, 0, 0, 0), wf
        assert f["run_success_rate"] == 1.0 and f["runs"] >= f["completed"]
    assert (figures["invoice_matching"]["completed"], figures["invoice_matching"]["writes"]) == (33, 99)
    assert (figures["ticket_intake"]["completed"], figures["ticket_intake"]["writes"]) == (48, 48)
    assert figures["access_offboarding"]["reviews"] == 8
    assert all(c.passed for c in run.get_asset_check_evaluations())
    with capsys.disabled():
        for wf, f in sorted(figures.items()):
            print(f"\ndemo scorecard {wf}: {json.dumps(f, sort_keys=True)}")


def test_thresholds_decide_spikes_and_floors():
    """The checks' arithmetic: doubling is a spike, the floors keep a quiet day quiet."""
    th = ScorecardThresholds()
    before = DayMetrics(workflow=WF, day=date(2026, 3, 4), intents=20, escalations=2, tokens=10_000, cost_usd=0.02,
                        policy_decisions=20, policy_blocks=2)

    def failed(**today: Any) -> set[str]:
        day = DayMetrics(workflow=WF, day=date(2026, 3, 5), **{**before.model_dump(exclude={"workflow", "day"}), **today})
        return {str(o.name) for o in evaluate(day, before, th) if not o.passed}

    assert failed() == set()
    assert failed(escalations=4) == {"escalation_rate_spike"}       # 10 % -> 20 %: doubled
    assert failed(escalations=3) == set()                           # 15 %: not doubled, under the 25 % ceiling
    assert failed(intents=10, escalations=3) == {"escalation_rate_spike"}  # 30 %: over the ceiling
    assert failed(tokens=19_999) == set() and failed(tokens=20_000) == {"token_spend_spike"}
    assert failed(cost_usd=0.04) == {"token_spend_spike"}
    assert failed(policy_blocks=4) == {"policy_blocks_rising"}      # 10 % -> 20 %
    assert failed(policy_blocks=3) == set()                         # +5 points only
    assert failed(writes=3, duplicate_writes=1) == {"no_duplicate_writes"}
    quiet = DayMetrics(workflow=WF, day=date(2026, 3, 4), intents=2)
    assert not [o for o in evaluate(quiet.model_copy(update={"escalations": 2, "tokens": 900}), quiet, th)
                if not o.passed]  # 2 escalations of 2 intents, 900 tokens: under the floors
    strict = ScorecardThresholds(min_escalations=1, min_tokens=0)
    assert {str(o.name) for o in evaluate(quiet.model_copy(update={"escalations": 2, "tokens": 900}), quiet, strict)
            if not o.passed} == {"escalation_rate_spike", "token_spend_spike"}
