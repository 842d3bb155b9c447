"""StepStore, the agent jobs' IO manager: step outputs live in our database (table step_outputs), never
under $DAGSTER_HOME, and re-execution from failure still loads the outputs of the steps it skips."""

from datetime import timedelta
from pathlib import Path

import dagster as dg
from pydantic import BaseModel
from sqlalchemy import func, select, update

from agent_pipelines.framework import step_store
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.jobs import build_job, run_config, run_tags
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.step_store import StepStore
from agent_pipelines.framework.tables import step_outputs
from tests.helpers import WF, intake, register, state

MARKER = "StepStoreMarker-7f3a9c"  # in the intake's memo: must reach our table and no Dagster file


class Tagged(BaseModel):
    """An output that names its intent, like a Carry."""

    intent_id: str


def dagster_files_holding(home: Path, needle: str) -> list[str]:
    """Every file under DAGSTER_HOME (storage, logs, SQLite event logs, ...) whose bytes hold `needle`."""
    raw = needle.encode()
    return [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and raw in p.read_bytes()]


def rows(project) -> list[dict]:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return [dict(r) for r in conn.execute(select(step_outputs).order_by(step_outputs.c.id)).mappings()]


@dg.op
def make_nothing():  # type: ignore[no-untyped-def]  # untyped on purpose: None goes through the IO manager
    return None


@dg.op
def make_value(nothing) -> dict:  # type: ignore[no-untyped-def]
    return {"was": nothing, "n": 3}


@dg.op
def use_value(value: dict) -> int:
    return value["n"] * 2


@dg.job
def plain_job() -> None:
    use_value(make_value(make_nothing()))


def test_outputs_that_are_not_a_carry_round_trip_through_our_database(project):
    runtime = AgentRuntime(db_url=project.settings.db_url)
    result = plain_job.execute_in_process(instance=project.instance, resources={
        "io_manager": StepStore(runtime=runtime)})
    assert result.success and result.output_for_node("use_value") == 6
    stored = {(r["step_key"], r["output_name"]): r for r in rows(project)}
    assert set(stored) == {("make_nothing", "result"), ("make_value", "result"), ("use_value", "result")}
    assert {r["run_id"] for r in stored.values()} == {result.run_id}
    assert step_store.load(project.db, result.run_id, "make_value", "result") == {"was": None, "n": 3}
    # Dagster's storage folder holds nothing of this run: no output pickles (and, with the no-op compute
    # log manager of our dagster.yaml, no captured logs either)
    run_storage = project.settings.dagster_home / "storage" / result.run_id
    assert not run_storage.exists() or [p.name for p in run_storage.iterdir()] == ["compute_logs"]


def _job_in_our_store():  # type: ignore[no-untyped-def]
    """The invoice job with injectable crashes (tests/faulty.py), its outputs in StepStore. The database
    comes from run config: Dagster caches reconstructable definitions per process."""
    from tests.faulty import FaultyInvoiceMatching

    wf = FaultyInvoiceMatching()
    runtime = AgentRuntime.configure_at_launch()
    defs = dg.Definitions(jobs=[build_job(wf)], resources={"runtime": runtime, "io_manager": StepStore(runtime=runtime)})
    return defs.get_job_def(wf.name)


def test_reexecution_from_failure_loads_the_skipped_steps_outputs_from_the_parent_run(seeded, faults):
    intent_id = register(seeded, intake(memo=f"pay soon {MARKER}"))
    faults.write_text("verify")
    recon = dg.reconstructable(_job_in_our_store)
    config = {**run_config(WF, intent_id), "resources": {"runtime": {"config": {"db_url": seeded.settings.db_url}}}}
    first = dg.execute_job(recon, instance=seeded.instance, run_config=config,
                           tags=run_tags(WF, intent_id, model="offline-rules"), raise_on_error=False)
    assert not first.success and state(seeded, intent_id) == "failed"
    first_steps = {r["step_key"] for r in rows(seeded) if r["run_id"] == first.run_id}
    assert first_steps == {f"invoice_matching__{s}" for s in ("read", "propose", "validate", "approve_gate", "commit")}

    faults.write_text("")
    opts = dg.ReexecutionOptions.from_failure(first.run_id, seeded.instance)
    second = dg.execute_job(recon, instance=seeded.instance, reexecution_options=opts, raise_on_error=False)
    assert second.success and state(seeded, intent_id) == "completed"
    executed = {e.step_key for e in second.all_events if e.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert executed == {"invoice_matching__verify", "invoice_matching__hand_off"}
    # verify's input is commit's output, stored by the first run: it was read from there
    loaded = [e for e in second.all_events if e.event_type == dg.DagsterEventType.LOADED_INPUT]
    assert [(e.step_key, e.event_specific_data.metadata["loaded_from"].value) for e in loaded] == [
        ("invoice_matching__verify", f"step_outputs {first.run_id}/invoice_matching__commit/result"),
        ("invoice_matching__hand_off", f"step_outputs {second.run_id}/invoice_matching__verify/result")]
    assert {r["intent_id"] for r in rows(seeded)} == {intent_id}

    # the intake reached our table (pickled with the Carry) and no file of Dagster's
    with seeded.db.connect() as conn:
        assert all(MARKER.encode() in p for p in conn.execute(select(step_outputs.c.payload)).scalars())
    assert dagster_files_holding(seeded.settings.dagster_home, MARKER) == []


def test_retention_prunes_settled_intents_and_keeps_those_that_may_be_re_executed(seeded):
    settled, open_ = register(seeded, intake()), register(seeded, intake(invoice_number="INV-200"))
    store = IntentStore(seeded.db)
    store.transition(settled, S.REJECTED_INPUT, reason="test")
    store.transition(open_, S.RUNNING)
    store.transition(open_, S.FAILED, reason="test")
    for run, intent in (("run-a", settled), ("run-b", open_), ("run-c", None)):
        step_store.save(seeded.db, run, "step", "result", Tagged(intent_id=intent) if intent else 42)
    step_store.save(seeded.db, "run-d", "step", "result", 7)  # recent: kept whatever its intent
    with seeded.db.begin() as conn:
        conn.execute(update(step_outputs).where(step_outputs.c.run_id != "run-d").values(
            created_at=step_store.utcnow() - timedelta(hours=25)))

    assert step_store.prune(seeded.db, timedelta(hours=24)) == 2
    assert {r["run_id"] for r in rows(seeded)} == {"run-b", "run-d"}  # run-b's intent failed: re-executable
    with seeded.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(step_outputs)).scalar_one() == 2


@dg.asset
def upstream_asset() -> dict:
    return {"rows": 2}


@dg.asset
def downstream_asset(upstream_asset: dict) -> int:
    return upstream_asset["rows"] + 1


def test_an_asset_value_is_loaded_by_a_later_run_from_our_database(project):
    resources = {"io_manager": StepStore(runtime=AgentRuntime(db_url=project.settings.db_url))}
    first = dg.materialize([upstream_asset], instance=project.instance, resources=resources)
    later = dg.materialize([upstream_asset, downstream_asset], selection=[downstream_asset],
                           instance=project.instance, resources=resources)
    assert first.success and later.success and later.output_for_node("downstream_asset") == 3
    assert {(r["run_id"], r["step_key"]) for r in rows(project)} == {
        (first.run_id, "asset:upstream_asset"), (later.run_id, "asset:downstream_asset")}
