"""The invoice batch job itself on two real Celery workers (tests/celery/harness.py), our database and
Dagster's storage on PostgreSQL: every intent finishes, each exactly once, and the chunks' steps ran in
more than one worker process."""

from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import func, select

from agent_pipelines import bench
from agent_pipelines.framework.batch import batch_run_config
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.ledger import duplicate_ledger_writes
from agent_pipelines.framework.tables import intents, writes
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from tests.celery import batch_jobs
from tests.celery.harness import celery_cluster
from tests.support import SUMMARY, fresh_pg_database

pytestmark = [pytest.mark.postgres, pytest.mark.pg_leg,
              pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered")]

N, CHUNK = 16, 4


def test_a_batch_runs_across_celery_workers_with_every_intent_once(tmp_path: Path) -> None:
    wf = InvoiceMatching()
    with fresh_pg_database("ap_celery_db") as db_url, celery_cluster(tmp_path, workers=2) as cluster:
        db = Database(db_url).migrate()
        with db.begin() as conn:
            bench.seed(conn, N)
        ids = bench.register(db, wf, bench.intakes(N))
        config = {**batch_run_config(wf, ids, CHUNK),
                  "resources": {"runtime": {"config": {"db_url": db_url, "state_dir": str(tmp_path)}}}}
        with dg.DagsterInstance.get() as instance:
            result = dg.execute_job(dg.reconstructable(batch_jobs.invoice_batch_job), instance=instance,
                                    run_config=config)
            assert result.success, cluster.log_tails()
            step_pids = {e.step_key: e.pid for e in result.all_events
                         if e.event_type == dg.DagsterEventType.STEP_START and e.step_key}
        with db.connect() as conn:
            states = dict(conn.execute(select(intents.c.state, func.count()).group_by(intents.c.state)).all())
            ledger = conn.execute(select(func.count()).select_from(writes)).scalar_one()
            dups = duplicate_ledger_writes(conn) + wf.duplicate_writes(conn)
        db.dispose()

    chunk_steps = {k: p for k, p in step_pids.items() if "[chunk_" in k}
    pids = set(chunk_steps.values())
    line = (f"celery batch: workers=2 intents={N} chunks={N // CHUNK} chunk_steps={len(chunk_steps)} "
            f"distinct_worker_pids={len(pids)} completed={states.get('completed', 0)} writes={ledger} "
            f"duplicates={dups}")
    print(line)
    SUMMARY.append(line)
    assert states == {"completed": N}
    assert ledger == 3 * N and dups == 0
    assert len(chunk_steps) == 7 * (N // CHUNK)  # read .. hand_off, once per chunk
    assert len(pids) >= 2, chunk_steps
