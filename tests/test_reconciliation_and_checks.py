"""The daily reconciliation raises one intent per disagreement; the asset check runs the same suite
VERIFY uses over the whole table."""

import dagster as dg
from sqlalchemy import select, update

from agent_pipelines.framework.tables import intents
from resources.system_of_record import scheduled_payments
from tests.helpers import intake, register, run_intent


def completed_invoice(project) -> None:  # type: ignore[no-untyped-def]
    assert run_intent(project, register(project, intake())).success


def run_job(project, name):  # type: ignore[no-untyped-def]
    return project.definitions.resolve_job_def(name).execute_in_process(instance=project.instance, raise_on_error=False)


def recon_intents(project):  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return conn.execute(select(intents).where(intents.c.workflow == "invoice_reconciliation")).mappings().all()


def test_reconciliation_finds_a_tampered_payment_once(seeded):
    completed_invoice(seeded)
    assert run_job(seeded, "invoice_reconciliation").success
    assert recon_intents(seeded) == []
    with seeded.db.begin() as conn:  # someone edits a payment outside the workflow
        conn.execute(update(scheduled_payments).values(amount_cents=99_999))
    for _ in range(2):
        assert run_job(seeded, "invoice_reconciliation").success
    found = recon_intents(seeded)
    assert len(found) == 1
    assert found[0]["state"] == "needs_attention" and found[0]["reason"].startswith("payment_amount_mismatch")
    assert found[0]["intake"] == {"kind": "payment_amount_mismatch", "subject": "SI-V-1-INV-100",
                                  "payable_cents": 100_000, "payment_cents": 99_999}


def test_asset_check_passes_on_agent_writes_and_fails_on_drift(seeded):
    completed_invoice(seeded)
    ok = run_job(seeded, "system_of_record__checks")
    assert {e.check_name: e.passed for e in ok.get_asset_check_evaluations()} == {
        "staged_invoices__post_write": True, "incidents__post_write": True,  # no incidents: an empty table passes
        "payments_refunds__post_write": True}  # no refund in the ledger to read back
    with seeded.db.begin() as conn:
        conn.execute(update(scheduled_payments).values(amount_cents=1))
    bad = run_job(seeded, "system_of_record__checks")
    by_name = {e.check_name: e for e in bad.get_asset_check_evaluations()}
    assert by_name["incidents__post_write"].passed
    evaluation = by_name["staged_invoices__post_write"]
    assert not evaluation.passed
    assert evaluation.asset_key == dg.AssetKey(["sor", "staged_invoices"])
    failed = evaluation.metadata["failed"].value
    assert any(f["expectation"] == "expect_column_pair_values_to_be_equal" for f in failed)


def test_definitions_load_with_jobs_sensors_schedules_and_checks(project):
    defs = project.definitions
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs()} >= {"invoice_matching", "invoice_matching__after_approval",
                                                    "invoice_reconciliation", "system_of_record__checks",
                                                    "approvals__housekeeping"}
    assert {s.name for s in repo.sensor_defs} >= {"invoice_matching__on_new_invoice", "approvals__on_decision",
                                                  "approvals__on_expiry", "agent_runs__on_failure"}
    assert {s.name for s in repo.schedule_defs} >= {"invoice_reconciliation__daily", "system_of_record__checks_daily",
                                                    "approvals__housekeeping_every_15m"}
    job = repo.get_job("invoice_matching")
    assert [n.name.split("__")[1] for n in job.graph.nodes_in_topological_order] == [
        "read", "propose", "validate", "approve_gate", "commit", "verify", "hand_off"]
    assert job.executor_def.name == "in_process"
