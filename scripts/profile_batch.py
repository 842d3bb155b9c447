#!/usr/bin/env python
"""Statements and transactions per intent on the batch path (issue 11): the bench's batch mode
(agent_pipelines/cli_bench.py) on a fresh state, with SQLAlchemy listeners on our database's engine
counting every statement (before_cursor_execute) and every transaction (begin), then a breakdown by
statement shape, per intent. Dagster's own storage is not counted (another engine). The process's CPU
time per intent is printed too: on a shared machine it moves less than the wall clock. PYTHONPATH picks
the checkout profiled (e.g. another worktree, to compare).

    PYTHONPATH=$PWD .venv/bin/python scripts/profile_batch.py [--n 300] [--backend sqlite|postgres] [--top 25]
"""

import argparse
import re
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: profile another checkout

from sqlalchemy import event  # noqa: E402

from agent_pipelines import bench  # noqa: E402
from agent_pipelines.cli_bench import PG_ADMIN, WARM_UP, _fresh_project, _run_batches  # noqa: E402


def shape(sql: str) -> str:
    """A statement's kind and table: 'INSERT tool_calls', 'UPDATE intents', 'SELECT intents', 'BEGIN'."""
    s = " ".join(sql.split())
    head = s.split(" ", 1)[0].upper()
    if head == "INSERT":
        m = re.search(r"INSERT INTO (\w+)", s, re.I)
    elif head == "UPDATE":
        m = re.search(r"UPDATE (\w+)", s, re.I)
    elif head in ("SELECT", "WITH"):
        m = re.search(r"\bFROM (\w+)", s, re.I)
    elif head == "DELETE":
        m = re.search(r"DELETE FROM (\w+)", s, re.I)
    else:
        return s[:40]
    return f"{head} {m.group(1) if m else '?'}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--backend", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--where", action="store_true", help="also attribute statements to the framework line issuing them")
    ap.add_argument("--built", action="store_true",
                    help="also count the statements built for the call (a new statement object, where a prebuilt one "
                         "would skip building and hashing its tree: sql.py), by the line issuing them")
    args = ap.parse_args()

    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

    wf = InvoiceMatching()
    with _fresh_project(args.backend, PG_ADMIN) as project:
        docs = bench.intakes(args.n + WARM_UP)
        with project.db.begin() as conn:
            bench.seed(conn, args.n + WARM_UP)
        ids = bench.register(project.db, wf, docs)
        _run_batches(project, ids[:WARM_UP], args.batch)

        counting = {"on": False}
        stmts: Counter[str] = Counter()
        rows: Counter[str] = Counter()  # executemany: statements counted once, parameter sets here
        where: Counter[tuple[str, str]] = Counter()
        built: Counter[str] = Counter()
        seen: set[int] = set()
        kept: list[Any] = []  # the statements seen, kept alive so that no new one reuses an id
        begins = Counter[str]()
        commits = Counter[str]()

        def _stmt(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
            if counting["on"]:
                k = shape(statement)
                stmts[k] += 1
                rows[k] += len(parameters) if executemany and parameters else 1
                if args.where:
                    where[(k, caller())] += 1

        def _exec(conn, clause, multiparams, params, options) -> None:  # type: ignore[no-untyped-def]
            if counting["on"] and args.built and id(clause) not in seen:
                seen.add(id(clause))
                kept.append(clause)
                built[caller()] += 1

        def _begin(conn) -> None:  # type: ignore[no-untyped-def]
            if counting["on"]:
                begins["writer" if conn.get_execution_options().get("agent_pipelines_writer") else "reader"] += 1

        def _commit(conn) -> None:  # type: ignore[no-untyped-def]
            if counting["on"]:
                commits["commit"] += 1

        # Writers, and on PostgreSQL the readers' engine too (framework/db.py, make_reader).
        for engine in {project.db.engine, project.db.reader}:
            event.listen(engine, "before_cursor_execute", _stmt)
            event.listen(engine, "before_execute", _exec)
            event.listen(engine, "begin", _begin)
            event.listen(engine, "commit", _commit)

        counting["on"] = True
        started, cpu = time.perf_counter(), time.process_time()
        ok = _run_batches(project, ids[WARM_UP:], args.batch)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        counting["on"] = False
        states = bench.settled_counts(project.db, wf.name)
        dups = bench.duplicate_writes(project.db, wf)

    n = args.n
    total = sum(stmts.values())
    print(f"backend={args.backend} n={n} runs={len(ok)} failed_runs={ok.count(False)} "
          f"ms_per_intent={seconds * 1000 / n:.2f} cpu_ms_per_intent={cpu * 1000 / n:.2f} duplicate_writes={dups} states={states}")
    print(f"per intent: statements {total / n:.1f}  transactions {sum(begins.values()) / n:.1f} "
          f"(writer {begins['writer'] / n:.1f}, reader {begins['reader'] / n:.1f})  commits {commits['commit'] / n:.1f}")
    print(f"{'statement':40} {'per intent':>10} {'rows/intent':>12}")
    for k, v in stmts.most_common(args.top):
        print(f"{k:40} {v / n:10.2f} {rows[k] / n:12.2f}")
    if args.where:
        print(f"\n{'statement':32} {'issued at':60} {'per intent':>10}")
        for (k, at), v in where.most_common(args.top * 2):
            print(f"{k:32} {at:60} {v / n:10.2f}")
    if args.built:
        print(f"\nstatements built for the call, per intent: {sum(built.values()) / n:.1f}")
        print(f"{'issued at':60} {'per intent':>10}")
        for at, v in built.most_common(args.top):
            print(f"{at:60} {v / n:10.2f}")


SKIP = ("framework/db.py", "framework/sql.py", "contextlib.py")


def caller() -> str:
    """The innermost frame of this project (outside the db/sql helpers) on the stack."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        f = frame.filename
        if ("agent_pipelines" in f or "/resources/" in f) and "site-packages" not in f and not f.endswith(SKIP):
            return f"{f.split('agent_pipelines/')[-1]}:{frame.lineno} {frame.name}"[:60]
    return "?"


if __name__ == "__main__":
    main()
