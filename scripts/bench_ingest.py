#!/usr/bin/env python
"""A flood's ingestion alone (issue 11): N invoice files in a fresh state's inbox, one pass of the invoice
sensor's `ingest_inbox` over them (read, parse, register the intent, record the inbox_files row), timed
wall and CPU per file. A figure, not a test. PYTHONPATH picks the checkout measured (e.g. another
worktree, to compare in the same hour).

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_ingest.py [--n 2000] [--backend sqlite|postgres]
"""

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: measure another checkout

from agent_pipelines import bench  # noqa: E402
from agent_pipelines.cli_bench import PG_ADMIN, _fresh_project  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    args = ap.parse_args()

    from agent_pipelines.framework import inbox
    from agent_pipelines.framework.intents import IntentStore
    from agent_pipelines.workflows.invoice_matching.parsing import parse_invoice
    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

    wf, log, warm_up = InvoiceMatching(), logging.getLogger("bench_ingest"), 5
    with _fresh_project(args.backend, PG_ADMIN) as project:
        store, root = IntentStore(project.db), project.settings.invoice_inbox
        root.mkdir(parents=True, exist_ok=True)
        docs = bench.intakes(args.n + warm_up)

        def ingest() -> inbox.InboxTick:  # every file settled: stamped as if read a minute later
            return inbox.ingest_inbox(store, wf, "bench_ingest", root, parse_invoice, settle_s=0, log=log,
                                      batch=args.n, now_ns=time.time_ns() + 60 * 10**9)

        bench.write_files(root, docs[:warm_up])
        ingest()  # imports, statement caches, the first connection
        bench.write_files(root, docs[warm_up:])
        wall, cpu = time.perf_counter(), time.process_time()
        done = ingest()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"ingest ({Path(inbox.__file__).parents[2].name}, {args.backend}): {len(done.registered)} files registered, "
          f"{wall / args.n * 1000:.3f} ms/file wall, {cpu / args.n * 1000:.3f} ms/file CPU, "
          f"{args.n / wall * 60:,.0f} files/min")


if __name__ == "__main__":
    main()
