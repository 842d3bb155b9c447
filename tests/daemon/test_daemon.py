"""The production path end to end: files dropped into the inbox are picked up by the real daemon's
sensor loop, queued, launched in run workers and committed; the webserver sees the runs; and a
SIGKILLed daemon with its run workers leaves no intent unfinished, half-committed or written twice."""

import json
import os
import socket
import time
import urllib.request
from collections.abc import Iterator

import dagster as dg
import pytest

from agent_pipelines.framework.recovery import batch_intent_ids
from tests.daemon.harness import REPO, Stack, invoice_bytes, stack, wait_until
from tests.support import SUMMARY

pytestmark = [pytest.mark.postgres, pytest.mark.pg_leg, pytest.mark.timeout(600)]  # its waits are bounded below

FIRST, SECOND = 6, 4  # files before and during the crash
# Time bounds: a per-intent run is a new worker that imports Great Expectations; measured at 50-60 s
# each, four at once, on a slow 2-core box (2026-12-02), so the bounds are a few of those, not a target.
LEASE_S = 30  # short claim lease (a loaded worker can take 15+ s from start to its first claim), so recovery fits in the test
RUNS_QUERY = """{ runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "invoice_matching__on_new_invoice"}]})
  { __typename ... on Runs { results { runId status jobName } } } }"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


def webserver_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def completed(s: Stack, names: list[str]) -> bool:
    rows = s.intents_by_file()
    return all(rows.get(n, {}).get("state") == "completed" for n in names)


def settled(s: Stack):  # type: ignore[no-untyped-def]
    st = s.project.status()
    return st if st.stranded == 0 and st.partial_commits == 0 else None


def run_intents(run: dg.DagsterRun) -> set[str]:
    """The intents a run works on: its intent tag (one intent's run) or its batch plan (a batch run)."""
    tagged = run.tags.get("agent_pipelines/intent_id")
    return {tagged} if tagged else set(batch_intent_ids(run.run_config))


def started_run(s: Stack, intent_ids: set[str]) -> str | None:
    """A started run of any of `intent_ids`, of either shape: files that reach the sensor in two ticks
    while the first one's run is in flight go out as a batch (triggers.launch_requests)."""
    runs = s.project.instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    return next((r.run_id for r in runs if run_intents(r) & intent_ids), None)


def runs_seen(s: Stack) -> str:
    """Every run with its status and intents, for a failure message."""
    return "; ".join(f"{r.run_id[:8]} {r.job_name} {r.status.value} {sorted(i[:8] for i in run_intents(r))}"
                     for r in s.project.instance.get_runs())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, int]]:
    state = tmp_path_factory.mktemp("daemon") / "state"
    with stack(REPO / "deploy" / "dagster.postgres.yaml", state, n_pos=FIRST + SECOND + 3,
               extra_env={"AGENT_PIPELINES_LEASE_SECONDS": str(LEASE_S)}) as s:
        port = free_port()
        s.start_daemon()
        s.start_webserver(port)
        try:
            yield s, port
        finally:
            for name in ("daemon", "webserver"):
                print(f"--- {name} log tail ---\n{s.log_tail(name)}")


def report(request: pytest.FixtureRequest, line: str) -> None:
    SUMMARY.append(line)


def test_the_daemon_commits_dropped_invoices_and_the_webserver_sees_the_runs(deployment, request):  # type: ignore[no-untyped-def]
    s, port = deployment
    t0 = time.monotonic()
    names = [f"inv-b{i:04d}.json" for i in range(FIRST)]
    for i, name in enumerate(names):
        s.drop(name, invoice_bytes(i, f"PO-B{i:04d}"))
    wait_until(f"{FIRST} intents completed by the daemon", lambda: completed(s, names), timeout_s=300, every_s=0.5)
    wait_until("the webserver", lambda: webserver_up(port), timeout_s=60, every_s=0.5)

    def succeeded_runs() -> list[dict] | None:  # type: ignore[type-arg]
        # An intent completes in its last step; its run reaches SUCCESS a moment later, in the worker.
        data = graphql(port, RUNS_QUERY)["runsOrError"]
        assert data["__typename"] == "Runs", data
        ok = [r for r in data["results"] if r["status"] == "SUCCESS" and r["jobName"] == "invoice_matching"]
        return ok if len(ok) >= FIRST else None

    succeeded = wait_until(f"the webserver to show {FIRST} successful runs", succeeded_runs, timeout_s=60, every_s=0.5)
    st = s.project.status()
    assert st.writes == 3 * FIRST and st.duplicate_writes == 0
    report(request, f"daemon: files={FIRST} runs={len(succeeded)} seconds={time.monotonic() - t0:.1f}")


def test_a_killed_daemon_and_its_workers_leave_every_intent_finished_exactly_once(deployment, request):  # type: ignore[no-untyped-def]
    s, _ = deployment
    t0 = time.monotonic()
    names = [f"inv-b{i:04d}.json" for i in range(FIRST, FIRST + SECOND)]
    for i, name in zip(range(FIRST, FIRST + SECOND), names, strict=True):
        s.drop(name, invoice_bytes(i, f"PO-B{i:04d}"))

    def new_intents() -> set[str] | None:
        rows = s.intents_by_file()
        return {str(rows[n]["intent_id"]) for n in names if n in rows} or None

    try:
        run_id = wait_until("a run of the new intents to start",
                            lambda: started_run(s, new_intents() or set()), timeout_s=180, every_s=0.1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; intents: {s.intents_by_file()}; runs: {runs_seen(s)}") from exc
    s.kill_daemon(keep_group=s.procs["webserver"].pid)  # daemon, code server, run workers; not the webserver
    interrupted = s.project.instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED

    s.start_daemon()
    wait_until(f"{SECOND} intents finished after the crash", lambda: completed(s, names), timeout_s=300, every_s=0.5)
    st = wait_until("no stranded intents and no partial commits", lambda: settled(s), timeout_s=60, every_s=1)
    assert st.duplicate_writes == 0
    assert st.writes == 3 * (FIRST + SECOND)
    runs = s.project.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "recovery__sweeper"}))
    report(request, f"daemon crash: files={SECOND} killed_run={run_id[:8]} interrupted={interrupted} "
                    f"recovery_runs={len(runs)} "
                    f"seconds={time.monotonic() - t0:.1f}")


def test_tick_and_the_daemon_share_their_cursors_and_launch_nothing_twice(deployment, request):  # type: ignore[no-untyped-def]
    """`tick` after the daemon launches nothing; the daemon after `tick` launches nothing for what
    `tick` already handled (both read the inbox state from our database)."""
    s, _ = deployment
    s.stop("daemon")
    runs_before = len(s.project.instance.get_runs())
    assert [r for t in s.project.tick() for r in t.runs] == []  # tick after the daemon: nothing new
    assert len(s.project.instance.get_runs()) == runs_before

    first = FIRST + SECOND
    by_tick = [f"inv-b{i:04d}.json" for i in range(first, first + 2)]
    for i, name in zip(range(first, first + 2), by_tick, strict=True):
        s.drop(name, invoice_bytes(i, f"PO-B{i:04d}"))
        settled_at = time.time() - 10  # delivered a while ago: past the inbox's settle window, no waiting
        os.utime(s.inbox / name, (settled_at, settled_at))
    ran = [r for t in s.project.tick() for r in t.runs]
    assert len(ran) == 2 and all(r.success for r in ran) and completed(s, by_tick)
    tick_intents = {str(s.intents_by_file()[n]["intent_id"]) for n in by_tick}

    s.start_daemon()  # the daemon after tick: a marker file proves its inbox sensor has run since
    marker = f"inv-b{first + 2:04d}.json"
    s.drop(marker, invoice_bytes(first + 2, f"PO-B{first + 2:04d}"))
    wait_until("the daemon to commit the marker file", lambda: completed(s, [marker]), timeout_s=240, every_s=0.5)
    for intent_id in tick_intents:
        runs = s.project.instance.get_runs(filters=dg.RunsFilter(tags={"agent_pipelines/intent_id": intent_id}))
        assert len(runs) == 1, [(r.run_id, r.tags.get("dagster/sensor_name")) for r in runs]
    st = s.project.status()
    assert st.duplicate_writes == 0 and st.stranded == 0 and st.partial_commits == 0
    report(request, "daemon+tick: tick_after_daemon_runs=0 daemon_after_tick_duplicate_runs=0")
