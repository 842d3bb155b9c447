#!/usr/bin/env python
"""The chaos suite at full size (issue 8, durable completion), with figures:

    .venv/bin/python scripts/chaos.py [--kills-per-point 5] [--restarts 10] [--fault-files 110] [--p 0.3]
                                      [--concurrent 8x50] [--disk-full-files 20] [--seed 8]

Needs PostgreSQL at 127.0.0.1:5432 (AGENT_PIPELINES_TEST_PG_URL) for Dagster's storage and our
database, root to create a private PostgreSQL 15 cluster (runuser -u postgres) for the restarts, and
tmpfs mounts for the full disk (falls back to SQLite max_page_count). Scenarios as in tests/chaos:
SIGKILL of the worker at every step boundary and between writes, PostgreSQL restarts under load, tool
faults and lost acknowledgements, a full SQLite disk, concurrent ticks. Prints one line per scenario and
`chaos: kills=... restarts=... faults=... intents=... completed=... stranded=0 partial_commits=0
duplicate_writes=0`; exits 1 if any end state is wrong."""

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.chaos import harness  # noqa: E402
from tests.chaos.workflow import BOUNDARIES  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills-per-point", type=int, default=5)
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--restart-files", type=int, default=24)
    ap.add_argument("--fault-files", type=int, default=110)
    ap.add_argument("--p", type=float, default=0.3)
    ap.add_argument("--concurrent", default="8x50", help="PROCESSESxFILES")
    ap.add_argument("--disk-full-files", type=int, default=20)
    ap.add_argument("--disk-full-rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--only", nargs="*", default=None, help="kills restarts faults disk_full concurrent")
    args = ap.parse_args()
    procs, files = (int(x) for x in args.concurrent.split("x"))
    figures = harness.Figures()
    wanted = set(args.only or ["kills", "restarts", "faults", "disk_full", "concurrent"])
    failed = False
    t_all = time.monotonic()

    def scenario(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        nonlocal failed
        if name not in wanted:
            return
        t = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix=f"ap_chaos_{name}_") as tmp:
                end = fn(Path(tmp))
            print(f"{name}: {time.monotonic() - t:.0f}s  intents {end.states}  writes {end.writes}  "
                  f"stranded {end.stranded} partial_commits {end.partial_commits} "
                  f"duplicate_writes {end.duplicate_writes}", flush=True)
        except Exception as exc:  # noqa: BLE001 - report and go on with the other scenarios
            failed = True
            print(f"{name}: FAILED after {time.monotonic() - t:.0f}s: {type(exc).__name__}: {exc}", flush=True)

    def kills(tmp: Path) -> harness.EndState:
        with harness.fresh_pg_database("ap_chaos_db") as url, harness.deployment(tmp, url, n_pos=1000) as d:
            return harness.scenario_kills(d, figures, BOUNDARIES + ["commit_plan"], per_point=args.kills_per_point,
                                          settle_s=600)

    def restarts(tmp: Path) -> harness.EndState:
        with harness.private_cluster() as cluster, \
                harness.fresh_pg_database("ap_chaos_db", cluster.admin_url) as url, \
                harness.deployment(tmp, url, n_pos=1000) as d:
            return harness.scenario_restarts(d, cluster, figures, files=args.restart_files, restarts=args.restarts,
                                             seed=args.seed, settle_s=600)

    def faults(tmp: Path) -> harness.EndState:
        with harness.fresh_pg_database("ap_chaos_db") as url, harness.deployment(tmp, url, n_pos=1000) as d:
            return harness.scenario_faults(d, figures, files=args.fault_files, p=args.p, seed=args.seed,
                                           settle_s=900)

    def disk_full(tmp: Path) -> harness.EndState:
        return harness.scenario_disk_full(tmp, figures, files=args.disk_full_files, full_rounds=args.disk_full_rounds,
                                          settle_s=600)

    def concurrent(tmp: Path) -> harness.EndState:
        with harness.fresh_pg_database("ap_chaos_db") as url, harness.deployment(tmp, url, n_pos=1000) as d:
            return harness.scenario_concurrent(d, figures, processes=procs, files=files, settle_s=600)

    scenario("kills", kills)
    scenario("restarts", restarts)
    scenario("faults", faults)
    scenario("disk_full", disk_full)
    scenario("concurrent", concurrent)
    print(f"total: {time.monotonic() - t_all:.0f}s; scenarios: {', '.join(figures.scenarios)}")
    print(figures.line(), flush=True)
    return 1 if failed or figures.stranded or figures.partial_commits or figures.duplicate_writes else 0


if __name__ == "__main__":
    sys.exit(main())
