"""The batch job: many intents per run through the same steps, with per-intent exactly-once kept, one
intent's failure isolated, one GE validation per suite per chunk, events per batch, re-execution from
failure, and adaptive batching in the sensors."""

import dagster as dg
from sqlalchemy import func, select

from agent_pipelines import bench
from agent_pipelines.framework.batch import batch_run_config
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.ledger import duplicate_ledger_writes
from agent_pipelines.framework.tables import intent_transitions, writes
from agent_pipelines.runner import tick
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from tests.faulty import FaultyInvoiceMatching
from tests.helpers import WF, intake, register

N = 12


def _batch(project, ids, chunk_size=5, wf=None):  # type: ignore[no-untyped-def]
    from agent_pipelines.framework.jobs import build_jobs
    from resources import build_resources

    job = dg.Definitions(jobs=[build_jobs(wf or WF).batch], resources=build_resources(project.settings)
                         ).get_job_def("invoice_matching__batch")
    return job.execute_in_process(run_config=batch_run_config(WF, ids, chunk_size), instance=project.instance,
                                  raise_on_error=False)


def _states(project, ids):  # type: ignore[no-untyped-def]
    store = IntentStore(project.db)
    return [str(store.get(i).state) for i in ids]


def _duplicates(project) -> int:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return duplicate_ledger_writes(conn) + InvoiceMatching().duplicate_writes(conn)


def _ledger(project) -> int:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(writes)).scalar_one()


def test_a_batch_takes_every_intent_through_the_steps_once(project):
    with project.db.begin() as conn:
        bench.seed(conn, N)
    ids = bench.register(project.db, WF, bench.intakes(N))
    ids.append(register(project, intake(source_name="x.json", invoice_number="INV-X", vendor_ref="V-NOPE")))
    result = _batch(project, ids)
    assert result.success
    assert _states(project, ids) == ["completed"] * N + ["rejected_input"]  # unknown vendor
    assert _ledger(project) == 3 * N and _duplicates(project) == 0

    # Dagster's events are per step and chunk: 3 chunks (5, 5, 3), one materialization per table per chunk
    mats = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]
    assert len(mats) == 3 * 3, [m.step_key for m in mats]
    checks = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert {c.step_key.split("[")[0] for c in checks} == {"invoice_matching__batch_validate",
                                                          "invoice_matching__batch_verify"}
    assert len(checks) == 2 * 3  # one evaluation per suite per chunk, never one per intent
    # each intent's record names the batch run that moved it
    with project.db.connect() as conn:
        run_ids = set(conn.execute(select(intent_transitions.c.run_id).where(
            intent_transitions.c.intent_id.in_(ids[:N]), intent_transitions.c.to_state == "completed")).scalars())
    assert run_ids == {result.run_id}

    # the same batch again changes nothing
    again = _batch(project, ids)
    assert again.success and _ledger(project) == 3 * N and _duplicates(project) == 0


def test_one_intents_failure_does_not_fail_the_others(project, faults):
    with project.db.begin() as conn:
        bench.seed(conn, 6)
    ids = bench.register(project.db, WF, bench.intakes(6))
    faults.write_text("verify")  # FaultyInvoiceMatching.verify raises for every intent ...
    poisoned = FaultyInvoiceMatching()
    result = _batch(project, ids[:3], wf=poisoned)
    assert result.success  # ... each failure is recorded on its intent, the run itself succeeds
    assert _states(project, ids[:3]) == ["failed"] * 3
    faults.write_text("")
    result = _batch(project, ids[3:], wf=poisoned)
    assert result.success and _states(project, ids[3:]) == ["completed"] * 3
    assert _duplicates(project) == 0


def test_a_suite_failure_goes_to_the_intent_whose_rows_failed(project):
    with project.db.begin() as conn:
        bench.seed(conn, 4)
    good = bench.intakes(4)
    bad_lines = tuple(li.model_copy(update={"amount_cents": li.amount_cents + 500}) for li in good[2].lines)
    good[2] = good[2].model_copy(update={"lines": bad_lines, "total_cents": good[2].total_cents + 1000})
    ids = bench.register(project.db, WF, good)
    result = _batch(project, ids, chunk_size=10)
    assert result.success
    states = _states(project, ids)
    assert states == ["completed", "completed", "rejected_input", "completed"]
    reason = IntentStore(project.db).get(ids[2]).reason
    assert "staged_invoice_lines.pre_write failed" in reason and "amount_delta_cents" in reason


def _batch_job():  # type: ignore[no-untyped-def]
    from tests.faulty import faulty_batch_job

    return faulty_batch_job()


def faulty_batch_then_from_failure(project, ids, chunk_size, faults):  # type: ignore[no-untyped-def]
    """The faulty batch job as the daemon would launch it (reconstructable), then, with the faults
    cleared, its re-execution from failure: (first result, a callable running the second)."""
    recon = dg.reconstructable(_batch_job)
    config = {**batch_run_config(WF, ids, chunk_size=chunk_size),
              "resources": {"runtime": {"config": {"db_url": project.settings.db_url,
                                                   "state_dir": str(project.settings.state_dir)}}}}
    first = dg.execute_job(recon, instance=project.instance, run_config=config, raise_on_error=False)

    def again():  # type: ignore[no-untyped-def]
        faults.write_text("")
        return dg.execute_job(recon, instance=project.instance, raise_on_error=False,
                              reexecution_options=dg.ReexecutionOptions.from_failure(first.run_id, project.instance))
    return first, again


def test_reexecution_from_failure_finishes_only_what_did_not_finish(project, faults):
    with project.db.begin() as conn:
        bench.seed(conn, 8)
    ids = bench.register(project.db, WF, bench.intakes(8))
    faults.write_text("store:commit")  # the commit op fails after its writes landed (storing its output)
    first, again = faulty_batch_then_from_failure(project, ids, 4, faults)
    assert not first.success
    assert set(_states(project, ids)) == {"committing"} and _ledger(project) == 24

    second = again()
    assert second.success
    executed = {e.step_key.split("[")[0] for e in second.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert "invoice_matching__batch_read" not in executed and "invoice_matching__batch_hand_off" in executed
    assert _states(project, ids) == ["completed"] * 8
    assert _ledger(project) == 24 and _duplicates(project) == 0


def test_the_sensor_launches_a_trickle_alone_and_a_flood_in_batches(project):
    """Fewer new files than batch_min_size (8) in a tick: one run each; 8 or more: a batch run."""
    with project.db.begin() as conn:
        bench.seed(conn, 9)
    inbox = project.settings.invoice_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    bench.write_files(inbox, bench.intakes(1))
    first = tick(project.definitions, project.instance, project.db)
    runs = [r for t in first for r in t.runs]
    assert [r.job for r in runs if r.job.startswith("invoice_matching")] == ["invoice_matching"]

    bench.write_files(inbox, bench.intakes(9)[1:])
    second = tick(project.definitions, project.instance, project.db)
    runs = [r for t in second for r in t.runs if r.job.startswith("invoice_matching")]
    assert [r.job for r in runs] == ["invoice_matching__batch"] and runs[0].success
    assert runs[0].run_key.startswith("batch:")
    done = IntentStore(project.db).counts()["invoice_matching"]
    assert done == {"completed": 9} and _duplicates(project) == 0


def test_arrivals_while_the_workflows_runs_are_queued_go_as_one_batch(project):
    """On the daemon runs take seconds to start: files that arrive while the workflow's runs are still
    queued or running are launched as one batch run, however few, instead of queueing one run each."""
    from agent_pipelines.framework.jobs import run_config

    with project.db.begin() as conn:
        bench.seed(conn, 4)
    inbox = project.settings.invoice_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    job = project.definitions.get_job_def("invoice_matching")
    waiting = project.instance.create_run_for_job(job, run_config=run_config(WF, "inv-elsewhere"),
                                                  status=dg.DagsterRunStatus.NOT_STARTED)
    bench.write_files(inbox, bench.intakes(3))
    ticks = tick(project.definitions, project.instance, project.db)
    runs = [r for t in ticks for r in t.runs if r.job.startswith("invoice_matching")]
    assert [r.job for r in runs] == ["invoice_matching__batch"] and runs[0].success
    # The queue drained: one more file is a trickle again, its own run at once.
    project.instance.report_run_canceled(project.instance.get_run_by_id(waiting.run_id))
    bench.write_files(inbox, bench.intakes(4)[3:])
    ticks = tick(project.definitions, project.instance, project.db)
    assert [r.job for t in ticks for r in t.runs if r.job.startswith("invoice_matching")] == ["invoice_matching"]
    assert IntentStore(project.db).counts()["invoice_matching"] == {"completed": 4} and _duplicates(project) == 0


def test_the_rate_limiter_holds_requests_and_tokens_per_minute():
    from agent_pipelines.framework.ratelimit import RateLimiter

    by_requests = RateLimiter(requests_per_min=3, tokens_per_min=None)
    for _ in range(3):
        assert by_requests.delay(0) == 0
        by_requests.acquire(0)
    assert 19 < by_requests.delay(0) <= 20  # the 4th request of the minute waits for a refill (1 per 20 s)

    by_tokens = RateLimiter(requests_per_min=None, tokens_per_min=6000)
    by_tokens.acquire(1000)
    by_tokens.settle(1000, 5500)  # the provider said the call used 5,500 tokens, not the 1,000 estimated
    assert 4.9 < by_tokens.delay(1000) <= 5  # 500 left of 6,000/min: 500 more take 5 s to refill


def test_a_batch_proposes_concurrently_within_its_bound(db_url, tmp_path):
    """Through the real instructor + openai client against a local endpoint with a fixed latency: the
    batch's proposals overlap, never more than llm_concurrency at once, and every intent completes."""
    from agent_pipelines.bench_llm import LatencyLLM, serve
    from agent_pipelines.project import Project
    from agent_pipelines.settings import Settings

    with serve(LatencyLLM(latency_s=0.2, capacity=8)) as llm:
        settings = Settings.from_env(tmp_path / "state", env={
            "AGENT_PIPELINES_DB_URL": db_url, "AGENT_PIPELINES_LLM_PROVIDER": "openai",
            "AGENT_PIPELINES_LLM_BASE_URL": llm.base_url, "AGENT_PIPELINES_LLM_MODEL": "bench-model",
            "AGENT_PIPELINES_LLM_API_KEY": "unused", "AGENT_PIPELINES_LLM_CONCURRENCY": "4"})
        project = Project(settings)
        project.prepare()
        with project.db.begin() as conn:
            bench.seed(conn, 12)
        ids = bench.register(project.db, WF, bench.intakes(12))
        job = project.definitions.get_job_def("invoice_matching__batch")
        result = job.execute_in_process(run_config=batch_run_config(WF, ids, 12), instance=project.instance,
                                        raise_on_error=False)
        assert result.success
        assert llm.served == 12 and 2 <= llm.max_in_flight <= 4, (llm.served, llm.max_in_flight)
        assert _states(project, ids) == ["completed"] * 12 and _duplicates(project) == 0
        project.instance.dispose()


def test_a_suites_rows_are_validated_as_one_frame_and_its_derived_columns_are_per_intent():
    """The validate step hands rows; the batch builds one frame, derives the suite's columns on it once
    (a line count per invoice, not per batch) and gives each intent the failures of its own rows."""
    import pandas as pd

    from agent_pipelines.framework import quality
    from assets.expectations import _invoice_lines_derived, invoice_lines_pre_write

    def line(no: int, qty: float = 2, price: int = 500) -> dict[str, object]:
        return {"description": f"line {no}", "sku": None, "quantity": qty, "unit_price_cents": price,
                "amount_cents": round(qty * price), "line_no": no}

    a, b = [line(1), line(2)], [line(1), line(2), line(2)]  # b repeats a line number
    results = quality.evaluate([("a", invoice_lines_pre_write(a)), ("b", invoice_lines_pre_write(b))])
    assert results["a"][0].passed and not results["b"][0].passed
    assert [f["expectation"] for f in results["b"][0].failed] == ["expect_compound_columns_to_be_unique"]
    frame = _invoice_lines_derived(pd.DataFrame([{**r, quality.OWNER: o} for o, rows in (("a", a), ("b", b))
                                                 for r in rows]))
    assert frame["invoice_line_count"].tolist() == [2, 2, 3, 3, 3]
