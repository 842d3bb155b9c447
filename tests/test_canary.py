"""Canaries: secrets and PII planted in inputs and in tool responses, the workflows run through their
sensors, and not one canary may appear in the Dagster event log, our trace tables or the CLI output."""

import json
import os
from datetime import UTC, datetime

import pytest
from dagster._serdes import serialize_value
from sqlalchemy import select
from typer.testing import CliRunner

from agent_pipelines.cli import app
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.jobs import build_job, run_config, run_tags
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.tables import (
    control_events,
    escalations,
    intent_transitions,
    llm_calls,
    policy_decisions,
    shadow_writes,
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
from tests.llm_server import ScriptedLLM, serve
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


@pytest.fixture
def planted(seeded, drop):  # type: ignore[no-untyped-def]
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


def test_planted_secrets_and_pii_reach_no_log_no_trace_table_and_no_cli_output(planted, monkeypatch):
    project = planted
    states = {i["source_ref"].rsplit("/", 1)[-1]: i["state"] for i in project.intents()}
    # the runs did real work with those inputs: a payment to the vendor's IBAN, a ticket, an approval
    assert "completed" in states.values() and "waiting_for_approval" in states.values(), states

    # 1. the Dagster event log of every run (messages, metadata, errors), serialized as stored
    instance = project.instance
    run_ids = [r.run_id for r in instance.get_runs()]
    event_log = "\n".join(serialize_value(e) for rid in run_ids for e in instance.all_logs(rid))
    assert len(run_ids) >= 3 and "trace.tool_call" in event_log

    # 2. our trace tables
    with project.db.connect() as conn:
        trace = "\n".join(json.dumps([dict(r) for r in conn.execute(select(t)).mappings()], default=str)
                          for t in (tool_calls, llm_calls, policy_decisions, intent_transitions, escalations, writes,
                                    shadow_writes, control_events))
    assert "schedule_payment" in trace and "find_requester" in trace

    # 3. what the CLI prints
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
    cli_text = "\n".join(outputs)
    assert "approval_id" in cli_text

    found = {"event log": leaks(event_log), "trace tables": leaks(trace), "CLI": leaks(cli_text)}
    print(f"canary: {len(CANARIES)} canaries, {len(run_ids)} runs, "
          f"{len(event_log)} chars of event log, {len(trace)} of trace, {len(cli_text)} of CLI output; "
          f"leaks: {sum(len(v) for v in found.values())}")
    assert found == {"event log": {}, "trace tables": {}, "CLI": {}}


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
