"""The inbox sensor: one intent per distinct file content, bad files recorded with a reason, and no
second write however often it ticks."""

import dagster as dg
from sqlalchemy import delete, func, select

from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.tables import inbox_files, intents, writes
from agent_pipelines.framework.triggers import MAX_FILE_BYTES
from tests.conftest import invoice_json


def evaluate(project, cursor=None):  # type: ignore[no-untyped-def]
    sensor = project.definitions.get_repository_def().get_sensor_def("invoice_matching__on_new_invoice")
    with dg.build_sensor_context(instance=project.instance, cursor=cursor, resources=project.definitions.resources,
                                 sensor_name=sensor.name) as ctx:
        return sensor.evaluate_tick(ctx)


def inbox_tick(project):  # type: ignore[no-untyped-def]
    return next(t for t in project.tick() if t.sensor == "invoice_matching__on_new_invoice")


def n_writes(project) -> int:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(writes)).scalar_one()


def test_same_invoice_under_two_names_is_one_intent_and_one_run(drop, seeded):
    drop("a.json", invoice_json())
    drop("copy-of-a.json", invoice_json())
    data = evaluate(seeded)
    assert len(data.run_requests) == 1
    rr = data.run_requests[0]
    assert rr.run_key == rr.tags["agent_pipelines/intent_id"]
    assert {"agent_pipelines/workflow", "agent_pipelines/workflow_version", "agent_pipelines/mode",
            "agent_pipelines/policy_digest", "agent_pipelines/model"} <= set(rr.tags)
    with seeded.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(intents)).scalar_one() == 1


def test_retick_and_cursor_reset_never_write_twice(drop, seeded):
    drop("a.json", invoice_json())
    drop("b.json", invoice_json(invoice_number="INV-200", total="1,300.00"))  # 30% over: waits for approval
    first = inbox_tick(seeded)
    assert len(first.runs) == 2 and all(r.success for r in first.runs)
    assert n_writes(seeded) == 3
    # again: nothing new
    assert inbox_tick(seeded).skip_reason.startswith("no new files")
    # Dagster's cursor lost (e.g. a new daemon): the inbox_files table is the cursor, nothing is re-read
    assert evaluate(seeded, cursor=None).skip_message.startswith("no new files")
    # the table lost too: the completed intent is not requested again; the waiting one is, and the
    # run_key dedupe skips it because it already has a run
    with seeded.db.begin() as conn:
        conn.execute(delete(inbox_files))
    again = inbox_tick(seeded)
    assert (again.requested, again.skipped_existing, len(again.runs)) == (1, 1, 0)
    # a run launched anyway (e.g. from the UI, which has no run_key dedupe) writes nothing more
    job = seeded.definitions.get_job_def("invoice_matching")
    for run in first.runs:
        rc = {"ops": {"invoice_matching__read": {"config": {"intent_id": run.run_key}}}}
        assert job.execute_in_process(run_config=rc, instance=seeded.instance).success
    assert n_writes(seeded) == 3


def test_malformed_and_oversized_files_are_recorded_and_the_rest_still_runs(drop, seeded):
    drop("broken.json", b'{"invoice_number": "X-1", "total": ')
    drop("huge.txt", b"x" * (MAX_FILE_BYTES + 1))
    drop("good.json", invoice_json())
    data = evaluate(seeded)
    assert len(data.run_requests) == 1
    with seeded.db.connect() as conn:
        rows = {r.source_ref.rsplit("/", 1)[-1]: r for r in conn.execute(select(intents))}
    assert rows["broken.json"].state == "rejected_input" and "not valid JSON" in rows["broken.json"].reason
    assert rows["huge.txt"].state == "rejected_input" and "limit" in rows["huge.txt"].reason
    assert rows["good.json"].state == "received"
    # the bad input is kept as evidence with the intent
    assert IntentStore(seeded.db).get(rows["broken.json"].intent_id).intake["preview"].startswith('{"invoice_number"')
