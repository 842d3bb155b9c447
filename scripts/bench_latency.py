#!/usr/bin/env python
"""Latency of the daemon path: invoice file dropped -> intent `completed` (verified writes landed).

Starts a fresh deployment (Dagster storage AND our database on new PostgreSQL databases on
AGENT_PIPELINES_TEST_PG_URL's server, a fresh state folder), runs `dagster-daemon run -w workspace.yaml`,
drops one warm-up invoice and waits for it (code server and first worker warm), then drops N distinct
clean invoices `--every` seconds apart and waits for each intent to complete. Prints first what a cold
run worker spends importing (a fresh interpreter, before the daemon starts), then per-phase medians,
p50/p95, and `latency: n=N p50=…s p95=…s`. The databases are dropped and the daemon (with its code
server and run workers) is killed at the end. `--warm` runs warm run workers (deploy/dagster.warm.yaml;
the broker must be up); `--compare` measures the default launcher and then warm workers in the same
run and prints the ratio of their p50s as its last line.

    .venv/bin/python scripts/bench_latency.py [--n 20] [--every 1] [--warm | --compare] [--events]
"""

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.daemon.harness import Stack, invoice_bytes, stack, wait_until, warm_env
from tests.support import Hopeless


def worker_imports(repeat: int = 3) -> dict[str, float]:
    """Median seconds of a fresh interpreter's `import agent_pipelines.warm` (what a warm run worker imports
    once; what a cold one pays before its first step), in total and per module it names, from Python's
    own -X importtime. Measured on the quiet machine before the daemon starts."""
    def once() -> dict[str, float]:
        lines = subprocess.run([sys.executable, "-X", "importtime", "-c", "import agent_pipelines.warm"], cwd=REPO,
                               check=True, capture_output=True, text=True).stderr.splitlines()
        seconds: dict[str, float] = {}
        # The log lists a module after the ones it imported: warm's own imports are the level-1 lines
        # since the last level-0 line (the interpreter's start-up imports are level 0 and their children).
        for line in lines:  # "import time: <self us> | <cumulative us> | <2 spaces per level><module>"
            if not line.startswith("import time:") or line.count("|") != 2:
                continue
            _, cumulative, name = line.split("|")
            level, module = (len(name) - len(name.lstrip()) - 1) // 2, name.strip()
            if level == 0 and module != "agent_pipelines.warm":
                seconds.clear()
            elif level == 0 or (level == 1 and module != "agent_pipelines"):  # (the package's own __init__: ~1 ms)
                seconds[module] = int(cumulative) / 1e6
        return seconds

    runs = [once() for _ in range(repeat)]
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: with n=20, p95 is the 19th smallest value."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# Where a clean invoice may be while the benchmark waits; anywhere else, it will never complete.
ON_THE_WAY = frozenset({"completed", "received", "running", "committing", "verifying"})


def completed(s: Stack, names: list[str]) -> dict[str, dict[str, object]] | None:
    rows = s.intents_by_file()
    stuck = {n: rows[n]["state"] for n in names if n in rows and rows[n]["state"] not in ON_THE_WAY}
    if stuck:  # a clean invoice that ends anywhere else is a broken benchmark, not a slow one
        raise RuntimeError(f"intents ended in unexpected states: {stuck}")
    done = {n: rows[n] for n in names if n in rows and rows[n]["completed"]}
    return done if len(done) == len(names) else None


def all_completed(s: Stack, n: int) -> bool:
    """All `n` invoice intents completed; ends the wait at once if one settled anywhere else."""
    from agent_pipelines import bench

    counts = bench.settled_counts(s.project.db, "invoice_matching")
    stuck = {k: v for k, v in counts.items() if k not in ON_THE_WAY}
    if stuck:  # a clean invoice that ends anywhere else is a broken benchmark, not a slow one
        raise Hopeless(f"intents ended in unexpected states: {stuck}")
    return counts.get("completed", 0) >= n


def run_phases(s: Stack, rows: dict[str, dict[str, object]]) -> dict[str, list[float]]:
    """Per intent: created -> run created (sensor tick + submit), run created -> started (queue +
    worker spawn), started -> completed (the run) from the Dagster instance's run records."""
    import dagster as dg

    instance = s.project.instance
    phases: dict[str, list[float]] = {"queue+launch": [], "run": []}
    for row in rows.values():
        recs = instance.get_run_records(filters=dg.RunsFilter(tags={"agent_pipelines/intent_id": str(row["intent_id"])}))
        started = [r for r in recs if r.start_time]
        if not started:
            continue
        r = min(started, key=lambda r: r.start_time or 0)
        phases["queue+launch"].append((r.start_time or 0) - r.create_timestamp.timestamp())
        phases["run"].append(float(row["completed"]) - (r.start_time or 0))  # type: ignore[arg-type]
    return phases


def event_phases(s: Stack, rows: dict[str, dict[str, object]]) -> dict[str, list[float]]:
    """Finer split of each intent's first run from its Dagster events: the gap before each event (and
    each step's duration), so a regression shows which hop it is in."""
    import dagster as dg

    instance = s.project.instance
    out: dict[str, list[float]] = {}
    marks = {dg.DagsterEventType.RUN_ENQUEUED: "enqueued", dg.DagsterEventType.RUN_DEQUEUED: "dequeued",
             dg.DagsterEventType.RUN_STARTING: "starting (launched)", dg.DagsterEventType.RUN_START: "worker started"}
    for row in rows.values():
        recs = instance.get_run_records(filters=dg.RunsFilter(tags={"agent_pipelines/intent_id": str(row["intent_id"])}))
        if not recs:
            continue
        r = min(recs, key=lambda r: r.create_timestamp)
        prev, prev_name = r.create_timestamp.timestamp(), "created"
        for e in instance.all_logs(r.dagster_run.run_id):
            et = e.dagster_event.event_type if e.dagster_event else None
            if et in marks:
                name = marks[et]
            elif et == dg.DagsterEventType.STEP_START:
                name = f"start {e.step_key}"
            elif et == dg.DagsterEventType.STEP_SUCCESS:
                name = f"end {e.step_key}"
            else:
                continue
            out.setdefault(f"{prev_name} -> {name}", []).append(e.timestamp - prev)
            prev, prev_name = e.timestamp, name
        out.setdefault(f"{prev_name} -> intent completed", []).append(float(row["completed"]) - prev)  # type: ignore[arg-type]
    return out


def sensor_ticks(s: Stack, dropped: dict[str, float], rows: dict[str, dict[str, object]]) -> list[str]:
    """Per file: the inbox sensor ticks around its drop (start offset from the drop, duration, status),
    so a slow pickup shows whether the file waited for a round, for its settle window or for the tick."""
    instance = s.project.instance
    [state] = [st for st in instance.all_instigator_state() if st.instigator_name == "invoice_matching__on_new_invoice"]
    ticks = sorted(instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                      after=min(dropped.values()) - 10), key=lambda t: t.timestamp)
    lines = []
    for name, t in sorted(dropped.items(), key=lambda kv: kv[1]):
        near = [k for k in ticks if t - 6 <= k.timestamp <= t + 8]
        desc = ", ".join(f"{k.timestamp - t:+.2f}s/{(k.end_timestamp or k.timestamp) - k.timestamp:.2f}s "
                         f"{k.status.value.lower()}{'*' if k.run_ids else ''}" for k in near)
        lines.append(f"{name}: pickup {float(rows[name]['created']) - t:5.2f}s; ticks {desc}")  # type: ignore[arg-type]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--every", type=float, default=1.0, help="seconds between drops")
    ap.add_argument("--dagster-yaml", type=Path, default=None,
                    help="default deploy/dagster.postgres.yaml, or deploy/dagster.warm.yaml with --warm")
    ap.add_argument("--warm", action="store_true",
                    help="warm run workers: deploy/dagster.warm.yaml and --run-workers Celery workers (the broker up)")
    ap.add_argument("--run-workers", type=int, default=2, help="with --warm: how many run workers (one run each)")
    ap.add_argument("--compare", action="store_true",
                    help="the default launcher, then warm run workers, in this run; prints both p50s and their ratio")
    ap.add_argument("--timeout", type=float, default=240, help="bound on each wait, seconds")
    ap.add_argument("--events", action="store_true", help="also print the gaps between each run's Dagster events")
    ap.add_argument("--flood", type=int, default=0,
                    help="instead of a trickle: drop this many files at once and print the daemon's intents/min")
    args = ap.parse_args()
    args.dagster_yaml = args.dagster_yaml or REPO / "deploy" / ("dagster.warm.yaml" if args.warm else "dagster.postgres.yaml")

    imports = worker_imports()
    total = imports.pop("agent_pipelines.warm")
    print(f"cold worker imports: {total:.2f}s (" + ", ".join(f"{k} {v:.2f}s" for k, v in imports.items()) + ")",
          flush=True)
    if args.flood:
        flood(args, args.dagster_yaml, args.warm)
        return 0
    if not args.compare:
        measure(args, args.dagster_yaml, args.warm)
        return 0
    # The default launcher and warm run workers, one after the other in this run: the ratio is the figure.
    cold = measure(args, REPO / "deploy" / "dagster.postgres.yaml", warm=False)
    warm = measure(args, REPO / "deploy" / "dagster.warm.yaml", warm=True)
    print(f"compare: default launcher p50={cold:.2f}s, warm run workers p50={warm:.2f}s, ratio {cold / warm:.2f}x")
    return 0


def measure(args: argparse.Namespace, dagster_yaml: Path, warm: bool) -> float:
    """One deployment from scratch: the warm-up invoice, then N files; prints the phases and the latency
    line, returns p50."""
    with tempfile.TemporaryDirectory(prefix="ap_bench_") as tmp, \
            stack(dagster_yaml, Path(tmp) / "state", n_pos=args.n + 1, extra_env=warm_env() if warm else None) as s:
        t0 = time.time()
        if warm:
            s.start_run_workers(args.run_workers)
            print(f"{args.run_workers} warm run workers ready in {time.time() - t0:.1f}s", flush=True)
        s.start_daemon()
        try:
            s.drop("warmup.json", invoice_bytes(0, "PO-B0000"))
            wait_until("the warm-up invoice", lambda: completed(s, ["warmup.json"]), args.timeout)
            print(f"warm-up done in {time.time() - t0:.1f}s (daemon start, code server, first run)", flush=True)
            dropped: dict[str, float] = {}
            for i in range(1, args.n + 1):
                name = f"inv-b{i:04d}.json"
                dropped[name] = s.drop(name, invoice_bytes(i, f"PO-B{i:04d}"))
                time.sleep(args.every)
            rows = wait_until(f"{args.n} intents completed", lambda: completed(s, list(dropped)), args.timeout)
        except BaseException:
            print(s.log_tail("daemon"), file=sys.stderr)
            raise
        finally:
            s.stop("daemon")
        latency = [float(rows[n]["completed"]) - t for n, t in dropped.items()]  # type: ignore[arg-type]
        pickup = [float(rows[n]["created"]) - t for n, t in dropped.items()]  # type: ignore[arg-type]
        phases = {"drop->intent (sensor pickup)": pickup, **run_phases(s, rows)}
        for name, values in phases.items():
            if values:
                print(f"  {name:32s} median {statistics.median(values):5.2f}s  max {max(values):5.2f}s")
        if args.events:
            print("  run events (first run of each intent, gap before each event):")
            for name, values in event_phases(s, rows).items():
                print(f"    {name:60s} median {statistics.median(values):5.2f}s  max {max(values):5.2f}s  n={len(values)}")
            print("  inbox sensor ticks per file (start from the drop / duration, * = launched runs):")
            for line in sensor_ticks(s, dropped, rows):
                print(f"    {line}")
        print(f"dagster.yaml: {dagster_yaml}")
        print(f"latency: n={len(latency)} p50={percentile(latency, 50):.2f}s p95={percentile(latency, 95):.2f}s",
              flush=True)
        return percentile(latency, 50)


def batch_size(record: Any) -> int:
    """The intents a batch run was launched with."""
    return len(record.dagster_run.run_config["ops"]["invoice_matching__batch_plan"]["config"]["intent_ids"])


def flood(args: argparse.Namespace, dagster_yaml: Path, warm: bool) -> float:
    """The production path under a flood: after the warm-up invoice, `--flood` files land at once (each
    renamed in, written beforehand); the daemon's sensor batches them and its queue runs the batch runs
    (max_concurrent_runs of the dagster.yaml) in their own processes. Prints the runs and their sizes, and
    `flood: n=N seconds=… intents_per_min=… duplicate_writes=…`, from the first drop to the last intent
    completed; returns intents/min."""
    import dagster as dg

    from agent_pipelines import bench
    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

    n = args.flood
    with tempfile.TemporaryDirectory(prefix="ap_bench_") as tmp, \
            stack(dagster_yaml, Path(tmp) / "state", n_pos=n + 1, extra_env=warm_env() if warm else None) as s:
        if warm:
            s.start_run_workers(args.run_workers)
        s.start_daemon()
        try:
            s.drop("warmup.json", invoice_bytes(0, "PO-B0000"))
            wait_until("the warm-up invoice", lambda: completed(s, ["warmup.json"]), args.timeout)
            names = [f"inv-f{i:05d}.json" for i in range(1, n + 1)]
            staged = Path(tmp) / "staged"
            staged.mkdir()
            for i, name in enumerate(names, start=1):
                (staged / name).write_bytes(invoice_bytes(i, f"PO-B{i:04d}"))
            started = time.time()
            for name in names:
                (staged / name).replace(s.inbox / name)
            # Polled once a second by counting states (one small statement): loading every intent's row
            # five times a second cost the measured machine ~8 s of CPU per 2,000-file flood.
            wait_until(f"{n} intents completed", lambda: all_completed(s, n + 1), max(args.timeout, n / 20),
                       every_s=1.0)
            # To the last intent's completion as recorded, not to the poll that saw it.
            rows = s.intents_by_file()
            seconds = max(float(rows[name]["completed"]) for name in names) - started  # type: ignore[arg-type]
        except BaseException:
            print(s.log_tail("daemon"), file=sys.stderr)
            raise
        finally:
            s.stop("daemon")
        runs = [r for r in s.project.instance.get_run_records(dg.RunsFilter(job_name="invoice_matching__batch"))]
        sizes = sorted(batch_size(r) for r in runs)
        per_intent = len(s.project.instance.get_run_records(dg.RunsFilter(job_name="invoice_matching")))
        duplicates = bench.duplicate_writes(s.project.db, InvoiceMatching())
        rate = n / seconds * 60
        print(f"dagster.yaml: {dagster_yaml}")
        print(f"runs: {len(runs)} batch runs (sizes {sizes}), {per_intent} per-intent runs")
        # When each batch run was created (sensor), started (queue + worker start) and ended, from the
        # first drop: a flood's time shows whether it went to pickup, to launching or to the runs.
        for r in sorted(runs, key=lambda r: r.create_timestamp):
            created = r.create_timestamp.timestamp() - started
            begun = (r.start_time - started) if r.start_time else float("nan")
            ended = (r.end_time - started) if r.end_time else float("nan")
            print(f"  run of {batch_size(r):4d}: created {created:6.1f}s  started {begun:6.1f}s  ended {ended:6.1f}s")
        print(f"flood: n={n} seconds={seconds:.1f} intents_per_min={rate:.0f} duplicate_writes={duplicates}", flush=True)
        return rate


if __name__ == "__main__":
    sys.exit(main())
