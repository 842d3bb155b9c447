"""The batch executor on real Celery workers (tests/celery/harness.py): stand-in batch jobs of 4
DynamicOutput chunks, run through the PostgreSQL instance with AGENT_PIPELINES_EXECUTOR=celery.

1. Every chunk runs exactly once, spread over more than one worker process, only on this cluster's workers.
2. A worker SIGKILLed in the middle of a chunk loses nothing: the chunk is redelivered to the other
   worker (deploy/celery.worker.yaml: late acks, requeue on a lost worker) and the run succeeds."""

import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from tests.celery import standin_jobs
from tests.celery.harness import Cluster, celery_cluster
from tests.support import SUMMARY, fresh_pg_database, wait_until

pytestmark = [
    pytest.mark.postgres, pytest.mark.pg_leg,
    # dagster-celery registers its execute_plan task again for every step it submits; Celery keeps the
    # first one (the same function), so the warning says nothing about us.
    pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered"),
]

WORKERS = 2


def execute(factory: Callable[[], dg.JobDefinition], db_url: str, op: str) -> tuple[bool, str]:
    """(success, run id) of a run through the instance with the job's own executor. execute_in_process
    would not do: it always runs every step in this process, whatever the job's executor."""
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(factory), instance=instance,
                                run_config=standin_jobs.run_config(db_url, op))
        submitted = [e for e in result.all_events if e.event_type_value == "ENGINE_EVENT"
                     and (e.message or "").startswith("Submitting celery task")]
        assert submitted, "no step was submitted to Celery: the run did not use the Celery executor"
        return result.success, result.run_id


def test_batch_chunks_run_once_each_across_celery_workers(tmp_path: Path) -> None:
    started = time.monotonic()
    with fresh_pg_database("ap_celery_db") as db_url, celery_cluster(tmp_path, workers=WORKERS) as cluster:
        standin_jobs.create_table(db_url)
        success, run_id = execute(standin_jobs.standin_batch_job, db_url, "record_chunk")
        assert success, f"run {run_id} failed\n{cluster.log_tails()}"
        rows = [(chunk, pid, node) for chunk, event, pid, node in standin_jobs.events(db_url) if event == "done"]
        node_names = cluster.node_names

    chunks = [chunk for chunk, _, _ in rows]
    duplicates = len(chunks) - len(set(chunks))
    pids = {pid for _, pid, _ in rows}
    line = (f"celery: workers={WORKERS} chunks={len(set(chunks))} distinct_worker_pids={len(pids)} "
            f"duplicates={duplicates}")
    print(line, f"({time.monotonic() - started:.1f}s with worker startup)")
    SUMMARY.append(line)

    assert sorted(set(chunks)) == list(range(standin_jobs.CHUNKS)), rows
    assert duplicates == 0, rows
    strays = {node for _, _, node in rows} - set(node_names)
    assert not strays, f"chunks ran on workers outside this cluster: {strays}"
    assert len(pids) >= 2, f"all chunks ran in one worker process: {rows}"


def kill_when_victim_starts(cluster: Cluster, db_url: str, killed: list[str], errors: list[BaseException]) -> None:
    """Wait for the victim chunk's first start, then SIGKILL the worker running it."""
    try:
        pid = wait_until("the victim chunk to start on a worker", lambda: next(
            (p for c, e, p, _ in standin_jobs.events(db_url) if c == standin_jobs.VICTIM and e == "start"), None), 60)
        killed.append(cluster.kill_worker_running(pid))
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread, which fails with it
        errors.append(exc)


def test_a_killed_worker_s_chunk_is_run_by_another_worker(tmp_path: Path) -> None:
    with fresh_pg_database("ap_celery_db") as db_url, celery_cluster(tmp_path, workers=WORKERS) as cluster:
        standin_jobs.create_table(db_url)
        killed: list[str] = []
        errors: list[BaseException] = []
        killer = threading.Thread(target=kill_when_victim_starts, args=(cluster, db_url, killed, errors), daemon=True)
        killer.start()
        success, run_id = execute(standin_jobs.standin_crash_job, db_url, "record_chunk_or_wait_to_die")
        killer.join(timeout=10)
        assert not errors, errors
        assert success, f"run {run_id} failed\n{cluster.log_tails()}"
        rows = standin_jobs.events(db_url)

    victim_starts = [(pid, node) for chunk, event, pid, node in rows
                     if chunk == standin_jobs.VICTIM and event == "start"]
    done = [chunk for chunk, event, _, _ in rows if event == "done"]
    assert len(killed) == 1 and victim_starts[0][1] == killed[0], (killed, rows)
    assert len(victim_starts) == 2 and victim_starts[1][1] != killed[0], f"victim not rerun elsewhere: {rows}"
    assert sorted(done) == list(range(standin_jobs.CHUNKS)), f"each chunk done exactly once: {rows}"
    SUMMARY.append(f"celery: killed worker {killed[0].split('@')[0]} mid-chunk; chunk redelivered, run succeeded")
