"""Warm run workers on the production path (deploy/dagster.warm.yaml): the real daemon hands each run
to Celery workers that imported this code location, the model client and Great Expectations once at
start, instead of a new interpreter per run. Files and refund requests are picked up, queued, run in
those workers and committed; runs reuse the workers' processes; and a worker SIGKILLed while a refund's
answer is in flight leaves the intent to the daemon's own recovery sweeper, which reconciles it with
one refund in the payments service and no person touching the database."""

import re
import signal
import time
from collections.abc import Iterator

import dagster as dg
import pytest

from agent_pipelines.framework.ledger import WriteStatus
from agent_pipelines.services.harness import Served, serve
from agent_pipelines.services.payments import payments_app
from agent_pipelines.workflows.refund import demo_data
from tests.celery.harness import require_broker
from tests.daemon.harness import REPO, Stack, process_group, invoice_bytes, stack, wait_until, warm_env
from tests.daemon.test_daemon_refund import add_request, refund_rows, service_refunds, state
from tests.support import SUMMARY

pytestmark = [pytest.mark.postgres, pytest.mark.pg_leg]

LEASE_S = 15  # the claim lease: the sweeper takes over a crashed intent this long after its last heartbeat
WORKERS = 2  # run workers, one run at a time each
_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Served]]:
    env = warm_env()
    require_broker(env["AGENT_PIPELINES_CELERY_BROKER"])
    with serve(payments_app()) as payments:
        payments.admin("/_admin/orders", demo_data.orders())
        state_dir = tmp_path_factory.mktemp("daemon_warm") / "state"
        with stack(REPO / "deploy" / "dagster.warm.yaml", state_dir, n_pos=4,
                   extra_env={**env, "AGENT_PIPELINES_LEASE_SECONDS": str(LEASE_S),
                              "AGENT_PIPELINES_PAYMENTS_URL": payments.base_url}) as s:
            s.start_run_workers(WORKERS)
            s.start_daemon()
            try:
                yield s, payments
            finally:
                print(f"--- daemon log tail ---\n{s.log_tail('daemon')}")
                for i in range(WORKERS + 1):
                    print(f"--- runworker{i} log tail ---\n{s.log_tail(f'runworker{i}')}")


def run_pid(s: Stack, run_id: str) -> int:
    """The process that executed the run, from the engine event its worker reports when it starts it."""
    for e in s.project.instance.all_logs(run_id):
        m = _PID.search(e.message or "")
        if m:
            return int(m.group(1))
    raise AssertionError(f"run {run_id} reports no worker process")


def runs_of(s: Stack, intent_id: str) -> list[dg.DagsterRun]:
    return list(s.project.instance.get_runs(filters=dg.RunsFilter(tags={"agent_pipelines/intent_id": intent_id})))


def test_runs_go_to_the_warm_workers_and_reuse_their_processes(deployment):
    s, _ = deployment
    t0 = time.monotonic()
    names = [f"warm-{i}.json" for i in range(1, 4)]
    for i, name in enumerate(names, start=1):  # one at a time: a run each, so processes must be reused
        s.drop(name, invoice_bytes(i, f"PO-B{i:04d}"))
        wait_until(f"{name} completed", lambda n=name: s.intents_by_file().get(n, {}).get("state") == "completed",
                   timeout_s=120, every_s=0.2)
    rows = s.intents_by_file()

    def their_runs() -> list[dg.DagsterRun]:
        return [r for n in names for r in runs_of(s, str(rows[n]["intent_id"]))]

    # An intent completes in its run's last step, before the run's own end is recorded: wait for that.
    wait_until("their runs to end", lambda: all(r.is_finished for r in their_runs()), timeout_s=60, every_s=0.2)
    runs = their_runs()
    assert len(runs) == len(names) and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    # launched as Celery tasks by the warm launcher, not as new interpreters by the default one
    assert all(r.tags.get("dagster-celery/task_id") for r in runs), [r.tags for r in runs]
    pids = {run_pid(s, r.run_id) for r in runs}
    assert len(pids) <= WORKERS < len(runs), pids  # three runs in at most two (long-lived) pool processes
    st = s.project.status()
    assert (st.duplicate_writes, st.stranded, st.partial_commits) == (0, 0, 0)
    SUMMARY.append(f"warm workers: runs={len(runs)} processes={len(pids)} duplicates={st.duplicate_writes} "
                   f"seconds={time.monotonic() - t0:.1f}")


def test_a_warm_worker_killed_mid_refund_is_finished_by_the_sweeper(deployment):
    s, payments = deployment
    before = payments.effects()["effects"]
    payments.faults(after_effect="lose", after_effect_count=1)  # the refund lands, its answer is held
    crashed = add_request(s, "R-warm-1", "ORD-1002", "The kettle arrived broken.")
    wait_until("the refund to land in the service", lambda: payments.effects()["effects"] == before + 1,
               timeout_s=150, every_s=0.1)
    [run] = [r for r in runs_of(s, crashed) if r.status == dg.DagsterRunStatus.STARTED]
    pid = run_pid(s, run.run_id)
    # The whole worker that runs it (the Celery parent and its pool: one process group) is SIGKILLed.
    [name] = [n for n, proc in s.procs.items() if n.startswith("runworker") and proc.pid == process_group(pid)]
    s.stop(name, sig=signal.SIGKILL)
    [pending] = refund_rows(s, crashed)
    assert pending["status"] == WriteStatus.PENDING  # the call was made, its answer never recorded
    wait_until("the held answer to be dropped", lambda: payments.effects()["in_flight"] == 0, timeout_s=90)
    s.start_run_workers(1, first=WORKERS)  # a replacement, so two workers stay up

    # The daemon's sweeper marks the dead worker's run failed after the lease, and its recovery run (on
    # a warm worker) reads the refund back by its idempotency key: no second call, no person.
    wait_until("the sweeper to complete the crashed refund", lambda: state(s, crashed) == "completed",
               timeout_s=240, every_s=0.5)
    [row] = refund_rows(s, crashed)
    assert row["status"] == WriteStatus.RECONCILED and row["evidence"]["via"] == "read_back"
    assert len([r for r in service_refunds(payments, "ORD-1002") if r["reference"] == "R-warm-1"]) == 1
    fx = payments.effects()
    assert (fx["effects"], fx["duplicates"]) == (before + 1, 0)  # counted by the service itself
    assert s.project.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    st = s.project.status()
    assert (st.duplicate_writes, st.stranded, st.partial_commits) == (0, 0, 0)
    SUMMARY.append(f"warm worker crash: refunds_in_service={fx['effects']} duplicates={fx['duplicates']} "
                   f"crashed_row={row['status']}")

