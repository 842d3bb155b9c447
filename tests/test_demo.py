"""The README's demo, through the real CLI, on the selected backend: every inbox category ends where
it should, and running it again adds nothing."""

import json

import pytest
from typer.testing import CliRunner

from agent_pipelines.cli import app
from agent_pipelines.workflows.crm_hygiene import demo_data as crm_demo
from agent_pipelines.workflows.invoice_matching import demo_data
from agent_pipelines.workflows.incident_triage import demo_data as incident_demo
from agent_pipelines.workflows.refund import demo_data as refund_demo
from agent_pipelines.workflows.ticket_intake import demo_data as ticket_demo

EXPECTED_STATE = {
    "clean": "completed", "small_variance": "completed", "missing_po_resolvable": "completed",
    "large_variance": "waiting_for_approval", "over_limit": "waiting_for_approval",
    "hostile_memo": "waiting_for_approval",
    "unknown_po": "waiting_for_input", "missing_po_ambiguous": "waiting_for_input",
    "missing_invoice_number": "waiting_for_input",
    "duplicate_resubmitted": "rejected_input", "malformed": "rejected_input", "unknown_vendor": "rejected_input",
    "closed_po": "rejected_input", "currency_mismatch": "rejected_input",
    "vendor_on_hold": "denied",
}


@pytest.fixture
def cli(project, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", project.settings.db_url)
    runner = CliRunner()

    def run(*args: str) -> dict:
        result = runner.invoke(app, [*args, "--state-dir", str(project.settings.state_dir), "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


# The demo is ~140 real runs (three workflows) twice: minutes on a 2-core machine, above the default.
@pytest.mark.timeout(900)
def test_demo_routes_every_category_and_a_second_run_adds_no_writes(cli, project):
    first = cli("demo")
    assert first["failed_runs"] == 0 and first["duplicate_writes"] == 0
    states = {r["source_ref"].rsplit("/", 1)[-1]: r["state"] for r in project.intents("invoice_matching")}
    outcomes = demo_data.expected_outcomes()
    assert len(outcomes) >= 50
    for name, category in outcomes.items():
        if category == "duplicate_copy":
            assert name not in states  # same bytes as an earlier file: the same intent, no second one
        else:
            assert states[name] == EXPECTED_STATE[category], (name, category)
    completed = sum(EXPECTED_STATE.get(c) == "completed" for c in outcomes.values())
    # tickets: every seeded message ends where its category says (one intent per message)
    tickets = {r["source_ref"]: r["state"] for r in project.intents("ticket_intake")}
    ticket_outcomes = ticket_demo.expected_outcomes()
    assert len(ticket_outcomes) >= 50 and len(tickets) == len(ticket_outcomes)
    assert sorted(tickets.values()) == sorted(ticket_demo.EXPECTED_STATE[c] for c in ticket_outcomes.values())
    tickets_done = sum(s == "completed" for s in tickets.values())
    # alerts: every seeded alert ends where its category says; one incident per completed one
    alerts = {r["source_ref"]: r["state"] for r in project.intents("incident_triage")}
    alert_outcomes = incident_demo.expected_outcomes()
    assert sorted(alerts.values()) == sorted(incident_demo.EXPECTED_STATE[c] for c in alert_outcomes.values()), [
        (r["intent_id"], r["state"], r["reason"]) for r in project.intents("incident_triage")]
    incidents_done = sum(s == "completed" for s in alerts.values())
    # refunds: every seeded request ends where its category says; one refund (through the payments
    # service) and one notice draft per completed request
    refunds = {r["source_ref"].split(":", 1)[1].split("@")[0]: r["state"] for r in project.intents("refund")}
    refund_outcomes = refund_demo.expected_outcomes()
    assert refunds == {rid: refund_demo.EXPECTED_STATE[c] for rid, c in refund_outcomes.items()}
    refunds_done = sum(s == "completed" for s in refunds.values())
    assert {"completed", "waiting_for_approval", "rejected_input"} <= set(refunds.values())
    # crm_hygiene: every stale opportunity ends where the demo data says (one intent per opportunity)
    crm = {r["source_ref"].split(":", 1)[1].split("@")[0]: r["state"] for r in project.intents("crm_hygiene")}
    assert crm == crm_demo.expected_states()
    crm_done = sum(s == "completed" for s in crm.values())  # one If-Match update each
    # stage invoice + PO invoiced amount + payment per invoice; create or append per message; one
    # incident per completed alert; a refund and its notice draft per completed refund request; one
    # If-Match update per completed opportunity
    assert first["writes"] == 3 * completed + tickets_done + incidents_done + 2 * refunds_done + crm_done

    second = cli("demo")
    assert (second["runs"], second["writes"], second["duplicate_writes"]) == (0, first["writes"], 0)
    assert second["intents"] == first["intents"]
    status = cli("status")
    assert {"intents", "writes", "duplicate_writes"} <= set(status) and status["writes"] == first["writes"]
    tick = cli("tick")
    assert tick["ticks"][0]["runs"] == [] and tick["writes"] == first["writes"]
