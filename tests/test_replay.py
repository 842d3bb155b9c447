"""Replay and diff on the demo's recording, through the real CLI, on the selected backend: every intent
with a run replays to its recorded decision; a raised auto-approve limit moves exactly the intents the
recorded policy facts say it should; replay writes to no table; reads outside the recording are errors,
and the model can answer live through the real instructor path."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

import agent_pipelines.schema  # noqa: F401 - registers the systems-of-record tables in `metadata`
from agent_pipelines.cli import app
from agent_pipelines.framework import replay
from agent_pipelines.framework.llm import LLMConfig
from agent_pipelines.framework.tables import (
    intent_runs,
    intents,
    metadata,
    policy_decisions,
    tool_calls,
)
from agent_pipelines.project import Project
from agent_pipelines.settings import Settings
from agent_pipelines.workflows import all_workflows
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from tests.conftest import fresh_database
from tests.llm_server import ScriptedLLM, serve
from tests.support import SUMMARY

POLICY = InvoiceMatching.policy_file
AUTO_LIMIT = "    value: 1000000            # 10,000.00\n"
RAISED = 3_000_000
SOR_AND_LEDGER = {"writes", "vendors", "purchase_orders", "po_lines", "staged_invoices", "staged_invoice_lines",
                  "scheduled_payments", "requesters", "teams", "products", "tickets", "ticket_messages",
                  "directory_accounts", "role_grants", "hr_offboarding"}


class Demo:
    def __init__(self, state: Path, project: Project) -> None:
        self.state, self.project = state, project

    def cli(self, *args: str, as_json: bool = True) -> Any:
        result = CliRunner().invoke(app, [*args, "--state-dir", str(self.state), *(["--json"] if as_json else [])])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.strip().splitlines()[-1]) if as_json else result.stdout

    def counts(self) -> dict[str, int]:
        """Rows of every table: ours, the ledger, the trace and the systems of record."""
        with self.project.db.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in metadata.sorted_tables}

    def sor_rows(self) -> dict[str, list[str]]:
        """The systems of record and the ledger, row by row."""
        names = [t for t in metadata.sorted_tables if t.name in SOR_AND_LEDGER]
        with self.project.db.connect() as conn:
            return {t.name: sorted(json.dumps(dict(r), default=str, sort_keys=True)
                                   for r in conn.execute(select(t)).mappings()) for t in names}


@pytest.fixture(scope="module")
def demo(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The README's demo, run once into a fresh state for this module (about 20 s)."""
    folder = tmp_path_factory.mktemp("replay")
    with fresh_database(backend, folder) as url, pytest.MonkeyPatch.context() as mp:
        mp.delenv("DAGSTER_HOME", raising=False)  # restored at the end: the CLI points it at the state
        mp.setenv("AGENT_PIPELINES_DB_URL", url)
        state = folder / "state"
        d = Demo(state, Project(Settings.from_env(state, env={"AGENT_PIPELINES_DB_URL": url})))
        first = d.cli("demo")
        assert first["failed_runs"] == 0
        yield d


def test_the_recording_pins_each_intent_runs_versions(demo: Demo) -> None:
    wfs = {wf.name: wf for wf in all_workflows()}
    with demo.project.db.connect() as conn:
        rows = conn.execute(select(intent_runs)).mappings().all()
        read_calls = conn.execute(select(func.count()).select_from(tool_calls).where(tool_calls.c.step == "read"))
        assert read_calls.scalar_one() > 0
    assert len(rows) >= 130
    for r in rows:
        wf = wfs[r["workflow"]]
        assert (r["workflow_version"], r["prompt_version"], r["policy_version"], r["policy_digest"]) == (
            wf.version, wf.prompt_version, wf.policy.version, wf.policy.digest)
        assert (r["mode"], r["provider"], r["model"]) == ("full", "offline", "offline-rules")
        assert len(r["intake_digest"]) == 64
        assert (r["decision"] is None) == (r["planned_writes"] is None)


def test_replaying_every_intent_of_the_demo_reproduces_its_recorded_decision(demo: Demo) -> None:
    out = demo.cli("replay")
    with demo.project.db.connect() as conn:
        ran = {i: s for i, s, last in conn.execute(select(intents.c.intent_id, intents.c.state, intents.c.last_run_id))
               if last is not None}
        at_intake = {i: s for i, s, last in conn.execute(select(intents.c.intent_id, intents.c.state,
                                                                intents.c.last_run_id)) if last is None}
    n = len(ran)
    assert out["replayed"] == n == len(out["intents"]) and n >= 130
    assert out["reproduced"] == n and out["reproduced_pct"] == 100.0
    assert out["headline"] == f"replayed {n} intents: {n} reproduced (100.0 %)"
    by_id = {r["intent_id"]: r for r in out["intents"]}
    assert set(by_id) == set(ran)
    # Every recorded decision is the intent's state now (nobody decided anything after the demo), and every
    # kind of outcome is among them, in all four workflows.
    assert all(by_id[i]["recorded"]["state"] == s == by_id[i]["replayed"]["state"] for i, s in ran.items())
    assert {s for s in ran.values()} == {"completed", "waiting_for_approval", "waiting_for_input", "rejected_input",
                                          "denied"}
    assert {r["workflow"] for r in out["intents"]} == {"invoice_matching", "ticket_intake", "access_offboarding",
                                                       "incident_triage", "refund", "crm_hygiene"}
    completed = [r for r in out["intents"] if r["recorded"]["state"] == "completed"]
    assert all(r["replayed"]["writes"] and r["replayed"]["writes"] == r["recorded"]["writes"] for r in completed)
    # Intents their trigger rejected never ran a step: listed, not counted as replayed.
    assert {u["intent_id"]: u["state"] for u in out["not_replayable"]} == at_intake
    assert set(at_intake.values()) == {"rejected_input"}
    text = demo.cli("replay", as_json=False)
    assert f"replayed {n} intents: {n} reproduced (100.0 %)" in text
    SUMMARY.append(f"replay [{demo.project.db.dialect}]: {out['headline']}; {len(at_intake)} decided at intake "
                   f"(no run to replay)")


def recorded_auto_limit_only(demo: Demo, limit: int) -> set[str]:
    """What the recording implies: intents whose recorded decision needed approval for one reason only,
    the auto-approve limit, with an amount the raised limit allows."""
    with demo.project.db.connect() as conn:
        rows = conn.execute(select(policy_decisions.c.intent_id, policy_decisions.c.observed).where(
            policy_decisions.c.workflow == "invoice_matching", policy_decisions.c.subject == "proposal",
            policy_decisions.c.decision == "needs_approval")).all()
    return {i for i, obs in rows if [r.split(":")[0] for r in obs["reasons"]] == ["amount_above_auto_limit"]
            and obs["values"]["amount_cents"] <= limit}


def test_a_raised_auto_approve_limit_moves_exactly_the_intents_the_recording_implies(demo: Demo,
                                                                                      tmp_path: Path) -> None:
    text = POLICY.read_text()
    assert text.count(AUTO_LIMIT) == 1
    pack = tmp_path / "policy.yaml"
    pack.write_text(text.replace(AUTO_LIMIT, f"    value: {RAISED}\n"))
    expected = recorded_auto_limit_only(demo, RAISED)
    assert len(expected) == 3  # the demo's over-limit invoices: 12,980.00, 22,200.00 and 26,400.00

    out = demo.cli("diff", "--workflow", "invoice_matching", "--policy", str(pack))
    assert out["policy_changes"] == [f"amount_above_auto_limit 1000000→{RAISED}"]
    assert out["moves"] == [{"workflow": "invoice_matching", "from": "waiting_for_approval", "to": "completed",
                             "intents": sorted(expected)}]
    assert out["summary"] == [(f"policy amount_above_auto_limit 1000000→{RAISED} moves 3 intents: "
                               f"waiting_for_approval → completed (invoice_matching): {sorted(expected)}")]
    assert out["reproduced"] == out["replayed"] - 3
    for r in out["intents"]:
        if r["intent_id"] in expected:
            # The change is the decision only: the same three writes, now planned for commit.
            assert r["diff"] == {"state": {"recorded": "waiting_for_approval", "replayed": "completed"},
                                 "decision": {"recorded": "needs_approval", "replayed": "allow"},
                                 "rule": {"recorded": "amount_above_auto_limit", "replayed": "within_policy"}}
            assert [w["action"] for w in r["replayed"]["writes"]] == [
                "stage_invoice", "record_po_invoiced", "schedule_payment"]
        else:
            assert r["diff"] == {} and r["reproduced"]
    lines = demo.cli("diff", "--workflow", "invoice_matching", "--policy", str(pack), as_json=False)
    assert "state: \"waiting_for_approval\" → \"completed\"" in lines
    SUMMARY.append(f"diff [{demo.project.db.dialect}]: {out['summary'][0]}")


def test_replay_writes_to_no_table(demo: Demo, tmp_path: Path) -> None:
    pack = tmp_path / "policy.yaml"
    pack.write_text(POLICY.read_text().replace(AUTO_LIMIT, "    value: 100\n"))  # every invoice needs approval
    before, rows = demo.counts(), demo.sor_rows()
    assert before["writes"] > 0 and before["staged_invoices"] > 0
    demo.cli("replay")
    moved = demo.cli("diff", "--policy", str(pack))
    assert moved["moves"]  # the replay decided differently and still wrote nothing
    assert demo.counts() == before
    assert demo.sor_rows() == rows


def test_a_read_outside_the_recording_is_an_error_of_the_replay(demo: Demo) -> None:
    wf = InvoiceMatching()
    with demo.project.db.connect() as conn:
        (intent_id, run_id), = [s for s in replay.select_runs(conn, workflow=wf.name)][:1]
    rec = replay.load(demo.project.db, intent_id, run_id)
    assert replay.replay(demo.project.db, wf, rec).key() == rec.outcome.key()
    out = replay.replay(demo.project.db, wf, rec.model_copy(update={"reads": {}}))
    assert out.state is None and out.error is not None and "is not in the recording" in out.error
    changed = rec.model_copy(update={"run": {**rec.run, "intake_digest": "0" * 64}})
    assert "the intake changed" in (replay.replay(demo.project.db, wf, changed).error or "")
    other = replay.replay_selected(demo.project.db, {wf.name: wf}, [(intent_id, run_id)], prompt_version="v0")
    assert other[0].replayed.error == "propose: no proposal in the recording (pass --live-model to ask the model)"


def test_live_model_replay_goes_through_instructor(demo: Demo) -> None:
    """--live-model asks the configured provider: here the real instructor + openai client against a local
    server that answers with the recorded proposal (reproduced), then with another PO (a new decision)."""
    wf = InvoiceMatching()
    with demo.project.db.connect() as conn:
        completed = conn.execute(select(intent_runs.c.intent_id, intent_runs.c.run_id).where(
            intent_runs.c.workflow == wf.name, intent_runs.c.decision == "allow").limit(1)).one()
    rec = replay.load(demo.project.db, *completed)
    assert rec.outcome.state == "completed" and rec.proposal is not None
    wrong = {**rec.proposal, "po_number": "PO-9999"}
    with serve(ScriptedLLM([rec.proposal])) as llm:
        config = LLMConfig(provider="openai", model="gpt-4o-mini", base_url=llm.base_url, api_key="k", max_reasks=0)
        out = replay.replay_selected(demo.project.db, {wf.name: wf}, [tuple(completed)], llm=config)
        assert len(llm.requests) == 1 and llm.requests[0]["model"] == "gpt-4o-mini"
    assert out[0].reproduced, out[0].replayed
    with serve(ScriptedLLM([wrong])) as llm:
        config = LLMConfig(provider="openai", model="gpt-4o-mini", base_url=llm.base_url, api_key="k", max_reasks=0)
        changed = replay.replay_selected(demo.project.db, {wf.name: wf}, [tuple(completed)], llm=config)[0]
    assert changed.replayed.state == "rejected_input" and "po_not_a_candidate" in (changed.replayed.reason or "")


def test_replay_selects_one_intent_one_run_or_refuses(demo: Demo) -> None:
    with demo.project.db.connect() as conn:
        run_id, n = conn.execute(select(intent_runs.c.run_id, func.count()).group_by(intent_runs.c.run_id)
                                 .order_by(func.count().desc()).limit(1)).one()
        one = conn.execute(select(intent_runs.c.intent_id).where(intent_runs.c.run_id == run_id).limit(1)).scalar_one()
        at_intake = conn.execute(select(intents.c.intent_id).where(intents.c.last_run_id.is_(None)).limit(1)).scalar_one()
    single = demo.cli("replay", one)
    assert (single["replayed"], single["reproduced"], single["not_replayable"]) == (1, 1, [])
    assert single["intents"][0]["run_id"] == run_id
    by_run = demo.cli("replay", "--run", run_id)
    assert by_run["replayed"] == by_run["reproduced"] == n > 1
    refused = CliRunner().invoke(app, ["replay", at_intake, "--state-dir", str(demo.state)])
    assert refused.exit_code == 1 and "decided at intake: no run" in refused.output
