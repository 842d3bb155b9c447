"""Exactly one write per intent under re-execution after crashes, duplicate runs and concurrency."""

import concurrent.futures
import multiprocessing
import threading
import time

import dagster as dg
import pytest
from sqlalchemy import func, select

from agent_pipelines.framework import inputs
from agent_pipelines.framework.jobs import run_config, run_tags
from agent_pipelines.framework.ledger import duplicate_ledger_writes
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from resources.system_of_record import purchase_orders, scheduled_payments, staged_invoices
from agent_pipelines.framework.tables import writes
from agent_pipelines.framework.ledger import WriteOutcome, apply_once
from tests.helpers import WF, intake, register, run_in_process, state


def counts(project) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        n = lambda t: conn.execute(select(func.count()).select_from(t)).scalar_one()  # noqa: E731
        po = conn.execute(select(purchase_orders.c.invoiced_cents).where(purchase_orders.c.po_number == "PO-1")).scalar_one()
        return {"invoices": n(staged_invoices), "payments": n(scheduled_payments), "ledger": n(writes),
                "po_invoiced": po, "dup": duplicate_ledger_writes(conn) + InvoiceMatching().duplicate_writes(conn)}


@pytest.mark.parametrize("fault,grouped", [("schedule_payment", False), ("schedule_payment", True), ("verify", True)])
def test_reexecution_from_failure_after_a_crash_writes_once(seeded, faults, fault, grouped):
    intent_id = register(seeded, intake())
    faults.write_text(fault)
    recon = dg.reconstructable(_grouped_faulty_job if grouped else _faulty_job)
    config = {**run_config(WF, intent_id), "resources": {"runtime": {"config": {"db_url": seeded.settings.db_url, "state_dir": str(seeded.settings.state_dir)}}}}
    first = dg.execute_job(recon, instance=seeded.instance, run_config=config,
                           tags=run_tags(WF, intent_id, model="offline-rules"), raise_on_error=False)
    assert not first.success
    assert state(seeded, intent_id) == "failed"
    before = counts(seeded)
    if fault == "schedule_payment" and not grouped:  # the commit crashed between its second and third write
        assert (before["invoices"], before["payments"], before["ledger"]) == (1, 0, 2)
    elif fault == "schedule_payment":  # the three writes go together: the crash rolled back all of them
        assert (before["invoices"], before["payments"], before["ledger"], before["po_invoiced"]) == (0, 0, 0, 0)
        assert inputs.saved_step(seeded.db, intent_id, "commit") is None  # the decided plan went with them
    else:  # all writes landed; verify crashed
        assert (before["invoices"], before["payments"], before["ledger"]) == (1, 1, 3)

    faults.write_text("")  # the operator fixes the cause, then re-executes from failure (as in the UI)
    opts = dg.ReexecutionOptions.from_failure(first.run_id, seeded.instance)
    second = dg.execute_job(recon, instance=seeded.instance, reexecution_options=opts, raise_on_error=False)
    assert second.success
    executed = {e.step_key for e in second.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert "invoice_matching__read" not in executed and "invoice_matching__hand_off" in executed
    assert state(seeded, intent_id) == "completed"
    assert counts(seeded) == {"invoices": 1, "payments": 1, "ledger": 3, "po_invoiced": 100_000, "dup": 0}

    # re-executing the whole successful run again changes nothing
    third = dg.execute_job(recon, instance=seeded.instance, raise_on_error=False,
                           reexecution_options=dg.ReexecutionOptions(parent_run_id=second.run_id,
                                                                     step_selection=["invoice_matching__commit*"]))
    assert third.success
    assert counts(seeded)["ledger"] == 3


def _faulty_job():  # type: ignore[no-untyped-def]
    from tests.faulty import faulty_job

    return faulty_job()


def _grouped_faulty_job():  # type: ignore[no-untyped-def]
    from tests.faulty import grouped_faulty_job

    return grouped_faulty_job()


def test_two_concurrent_runs_of_the_same_intent_write_once(seeded):
    """Two worker processes run the same intent at the same moment; the ledger lets one write."""
    intent_id = register(seeded, intake())
    seeded.instance.get_runs()  # the Dagster instance's storage exists before the workers share it
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        barrier = multiprocessing.get_context("spawn").Manager().Barrier(2)
        args = (seeded.settings.db_url, str(seeded.settings.state_dir), intent_id, barrier)
        futures = [pool.submit(run_in_process, *args) for _ in range(2)]
        assert [f.result(timeout=180) for f in futures] == [True, True]
    assert counts(seeded) == {"invoices": 1, "payments": 1, "ledger": 3, "po_invoiced": 100_000, "dup": 0}
    assert state(seeded, intent_id) == "completed"


def test_the_ledger_lets_exactly_one_of_two_racing_writers_through(project):
    """Both writers are inside apply_once at once; the second blocks on the UNIQUE key, then finds it."""
    calls: list[str] = []
    b_started = threading.Event()

    def write(conn):  # type: ignore[no-untyped-def]
        calls.append(threading.current_thread().name)
        b_started.wait(5)
        time.sleep(0.2)  # widen the window so B is blocked on the key while A still holds it
        return WriteOutcome(table="t", key="k", before=None, after={"v": 1})

    out: dict[str, str] = {}

    def go(name: str) -> None:
        if name == "B":
            b_started.set()
        receipt = apply_once(project.db, workflow="w", intent_id="i", action="a", tool="t", run_id=name, write=write)
        out[name] = receipt.status

    a = threading.Thread(target=go, args=("A",), name="A")
    a.start()
    while not calls:  # A is inside its transaction
        time.sleep(0.01)
    b = threading.Thread(target=go, args=("B",), name="B")
    b.start()
    a.join(30)
    b.join(30)
    assert calls == ["A"]
    assert out == {"A": "committed", "B": "already_committed"}


def test_a_po_changed_since_it_was_read_is_not_written_blindly(seeded):
    """Another writer bumps the PO between READ and COMMIT: the precondition stops the write."""
    intent_id = register(seeded, intake())

    class Interleaved(InvoiceMatching):
        def validate(self, *args):  # type: ignore[no-untyped-def]
            with seeded.db.begin() as conn:  # a human edits the PO after the run read it
                conn.execute(purchase_orders.update().where(purchase_orders.c.po_number == "PO-1")
                             .values(total_cents=190_000, version=purchase_orders.c.version + 1))
            return super().validate(*args)

    from agent_pipelines.framework.jobs import build_job
    from resources import build_resources

    job = dg.Definitions(jobs=[build_job(Interleaved())],
                         resources=build_resources(seeded.settings)).get_job_def("invoice_matching")
    result = job.execute_in_process(run_config=run_config(WF, intent_id), instance=seeded.instance,
                                    raise_on_error=False)
    assert not result.success
    from agent_pipelines.framework.intents import IntentStore

    intent = IntentStore(seeded.db).get(intent_id)
    assert intent.state == "needs_attention" and "changed since they were read" in intent.reason
    assert "'version': 1" in intent.reason and "'version': 2" in intent.reason
    c = counts(seeded)  # nothing at all was written: the check runs before the first write
    assert (c["invoices"], c["payments"], c["ledger"], c["po_invoiced"]) == (0, 0, 0, 0)
