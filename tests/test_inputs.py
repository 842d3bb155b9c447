"""Input recovery: one question with a TTL, an answer by CLI, a resume that reuses finished steps."""

from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from agent_pipelines.cli import app
from agent_pipelines.framework import inputs
from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.jobs import build_jobs, run_config
from agent_pipelines.framework.tables import escalations, input_requests, llm_calls, writes
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from resources import build_resources
from tests.helpers import intake, register, run_intent, state

FIELDS = set(InvoiceMatching.intake_model.model_fields)


def waiting(project, **overrides):  # type: ignore[no-untyped-def]
    intent_id = register(project, intake(**({"po_number": "PO-404"} | overrides)))
    assert run_intent(project, intent_id).success
    assert state(project, intent_id) == "waiting_for_input"
    return intent_id


def resume_runs(project):  # type: ignore[no-untyped-def]
    return [r for t in project.tick() if t.sensor == "inputs__on_answer" for r in t.runs]


def test_an_answer_by_cli_resumes_the_intent_once(seeded, monkeypatch):
    intent_id = waiting(seeded)
    with seeded.db.connect() as conn:
        q = conn.execute(select(input_requests)).mappings().one()
    assert (q["field"], q["status"]) == ("po_number", "pending") and "PO-404" in q["question"]
    assert q["expires_at"] > q["created_at"]
    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", seeded.settings.db_url)
    result = CliRunner().invoke(app, ["inputs", "provide", intent_id, "po_number=PO-1", "--as", "alice",
                                      "--state-dir", str(seeded.settings.state_dir)])
    assert result.exit_code == 0, result.output
    runs = resume_runs(seeded)
    assert len(runs) == 1 and runs[0].success
    assert state(seeded, intent_id) == "completed"
    assert IntentStore(seeded.db).get(intent_id).intake["po_number"] == "PO-1"  # the answer is on the intent
    assert resume_runs(seeded) == []
    with seeded.db.connect() as conn:
        assert len(conn.execute(select(writes)).all()) == 3


@pytest.mark.parametrize("target, answer, why", [
    ("missing", {"po_number": "PO-1"}, "no intent"),
    ("waiting", {"invoice_number": "X"}, "the question is about 'po_number'"),
    ("waiting", {"po_number": "PO-1", "approved": "yes"}, "unknown field"),
    ("completed", {"po_number": "PO-1"}, "not waiting_for_input"),
])
def test_refused_answers_change_nothing(seeded, target, answer, why):
    intent_id = waiting(seeded)
    if target == "completed":
        intent_id = register(seeded, intake(invoice_number="INV-9"))
        assert run_intent(seeded, intent_id).success
    if target == "missing":
        intent_id = "invoice_matching:nope"
    with pytest.raises(inputs.InputRefused, match=why):
        inputs.provide(seeded.db, intent_id, answer, by="alice", allowed_fields=FIELDS)
    with seeded.db.connect() as conn:
        assert [r.status for r in conn.execute(select(input_requests))] == ["pending"]


def test_an_unanswered_question_expires_and_is_escalated(seeded):
    intent_id = waiting(seeded)
    with seeded.db.begin() as conn:
        conn.execute(update(input_requests).values(expires_at=utcnow() - timedelta(minutes=1)))
    with pytest.raises(inputs.InputRefused, match="expired"):
        inputs.provide(seeded.db, intent_id, {"po_number": "PO-1"}, by="alice", allowed_fields=FIELDS)
    [housekeeping] = [t for t in seeded.tick() if t.sensor == "approvals__on_expiry"]
    assert [r.success for r in housekeeping.runs] == [True]
    assert state(seeded, intent_id) == "expired"
    with seeded.db.connect() as conn:
        assert conn.execute(select(escalations.c.kind, escalations.c.intent_id)).all() == [("input_expired", intent_id)]


class ResumeAtValidate(InvoiceMatching):
    """A workflow whose answered field does not change what READ and PROPOSE produced."""

    def resume_from(self, answered_field: str) -> str:
        return "validate"


def test_a_resumed_intent_reuses_the_steps_already_done(seeded):
    wf = ResumeAtValidate()
    job = dg.Definitions(jobs=[build_jobs(wf).main], resources=build_resources(seeded.settings)).get_job_def(wf.name)
    intent_id = register(seeded, intake(invoice_number=None))
    first = job.execute_in_process(run_config=run_config(wf, intent_id), instance=seeded.instance)
    assert first.success and state(seeded, intent_id) == "waiting_for_input"
    inputs.provide(seeded.db, intent_id, {"invoice_number": "INV-77"}, by="alice", allowed_fields=FIELDS)
    second = job.execute_in_process(run_config=run_config(wf, intent_id), instance=seeded.instance)
    assert second.success and state(seeded, intent_id) == "completed"
    with seeded.db.connect() as conn:
        llm = conn.execute(select(llm_calls).where(llm_calls.c.run_id == second.run_id)).all()
    assert llm == []  # PROPOSE was not redone
    events = seeded.instance.all_logs(second.run_id)
    read_tools = [e for e in events if e.step_key == "invoice_matching__read" and "trace.tool_call" in (e.user_message or "")]
    assert read_tools == []  # nor READ (COMMIT still re-reads to check its preconditions)
    logs = " ".join(e.user_message or "" for e in events)
    assert "reusing the context persisted by run " + first.run_id in logs
    assert "reusing the proposal persisted by run " + first.run_id in logs


def test_a_follow_up_file_with_the_same_correlation_answers_the_waiting_intent(drop, seeded):
    from tests.conftest import invoice_json

    drop("inv-100.json", invoice_json(po_number="PO-404"))
    seeded.tick()
    [waiting_intent] = [i for i in seeded.intents("invoice_matching") if i["state"] == "waiting_for_input"]
    drop("inv-100-resent.json", invoice_json(po_number="PO-1", memo="re-sent with the right PO"))
    seeded.tick()  # the invoice sensor hands the PO number to the waiting intent
    seeded.tick()  # the input sensor resumes it
    by_source = {i["source_ref"].rsplit("/", 1)[-1]: i for i in seeded.intents("invoice_matching")}
    assert by_source["inv-100.json"]["state"] == "completed"
    follow_up = by_source["inv-100-resent.json"]
    assert follow_up["state"] == "completed" and waiting_intent["intent_id"] in follow_up["reason"]
    with seeded.db.connect() as conn:
        q = conn.execute(select(input_requests)).mappings().one()
        assert len(conn.execute(select(writes)).all()) == 3
    assert (q["answer"], q["answered_by"]) == ({"po_number": "PO-1"}, "source:inv-100-resent.json")
