"""Chaos against durable completion (issue 8): SIGKILL of the worker at every step boundary and between
two writes of one commit, restarts of the PostgreSQL cluster holding our database under load, tool
faults and lost acknowledgements at p = 0.3, a full disk under SQLite, and concurrent ticks. Each test
asserts the end state from the tables: nothing stranded, no partial commit, no duplicate write, no
intent left in received/running/committing/verifying, every dropped file registered.

CI sizes (the whole file stays within ~4 minutes on 2 cores); scripts/chaos.py runs the large ones."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import harness
from tests.chaos.harness import Deployment, Figures
from tests.chaos.workflow import BOUNDARIES

pytestmark = [pytest.mark.postgres, pytest.mark.pg_leg, pytest.mark.timeout(240)]


@pytest.fixture
def on_shared_pg(tmp_path: Path) -> Iterator[Deployment]:
    """Our database and Dagster's on fresh databases of the shared server."""
    with harness.fresh_pg_database("ap_chaos_db") as db_url, harness.deployment(tmp_path, db_url, n_pos=200) as d:
        yield d


def report(figures: Figures, end: harness.EndState, what: str) -> None:
    print(f"\n{what}: intents {end.states}, writes {end.writes}; so far: {figures.line()}")


def test_sigkill_at_every_step_boundary_and_between_writes(on_shared_pg, figures):
    end = harness.scenario_kills(on_shared_pg, figures, BOUNDARIES + ["commit_plan"], per_point=1)
    # every killed intent was a clean invoice: the sweeper finished all of them, each write once
    assert end.states == {"completed": len(BOUNDARIES) + 1}
    assert end.writes == 3 * (len(BOUNDARIES) + 1)
    report(figures, end, "kills")


def test_sigkill_inside_an_intents_writes_leaves_none_of_them(on_shared_pg, figures):
    """The invoice tools local, as shipped: the worker dies inside the one transaction that holds the
    intent's three writes (two ran, the third was about to). None of them landed, nor did the decided
    plan stored with them: the sweeper starts the intent again from read and finishes it, each write once."""
    def nothing_landed(mid: harness.EndState) -> None:
        assert (mid.writes, mid.partial_commits, mid.states) == (0, 0, {"committing": 1})

    end = harness.scenario_kills(on_shared_pg, figures, ["commit_in_group"], per_point=1, after_kills=nothing_landed)
    assert end.states == {"completed": 1} and end.writes == 3
    report(figures, end, "kill inside a group of writes")


def test_postgres_restarts_under_load(tmp_path, figures):
    with harness.private_cluster() as cluster, harness.fresh_pg_database("ap_chaos_db", cluster.admin_url) as db_url, \
            harness.deployment(tmp_path, db_url, n_pos=200) as d:
        end = harness.scenario_restarts(d, cluster, figures, files=16, restarts=2, seed=8)
    assert cluster.restarts == 2
    assert end.completed >= 1
    report(figures, end, "restarts")


def test_tool_faults_and_lost_acknowledgements(on_shared_pg, figures):
    end = harness.scenario_faults(on_shared_pg, figures, files=16, p=0.3, seed=8)
    assert end.completed >= 1
    report(figures, end, "faults")


def test_sqlite_disk_full_loses_nothing(tmp_path, figures):
    end = harness.scenario_disk_full(tmp_path, figures, files=8, full_rounds=1)
    assert end.intents == end.files == 16
    report(figures, end, "disk full")


def test_concurrent_ticks_commit_each_intent_once(on_shared_pg, figures):
    end = harness.scenario_concurrent(on_shared_pg, figures, processes=4, files=20)
    assert end.intents == 20 and not end.states.get("failed")
    report(figures, end, "concurrent")
