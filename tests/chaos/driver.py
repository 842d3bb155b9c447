"""A chaos worker: `agent-pipelines tick` on the chaos definitions (tests/chaos/workflow.py), in its own
process so it can be SIGKILLed. Configuration comes from the environment (AGENT_PIPELINES_DB_URL,
DAGSTER_HOME, ...) like the CLI; chaos comes from the flags.

    python -m tests.chaos.driver --state-dir DIR --kill-at commit_after_write_1
    python -m tests.chaos.driver --state-dir DIR --loop --deadline 120 --tool-fault-p 0.3 --lost-ack-p 0.3

`--loop` ticks until the state is settled (every inbox file has an intent, no intent is received,
running, committing, verifying or failed) or the deadline passes; a tick that fails on an
infrastructure error (the database restarting, a full disk) is logged and the next tick follows after
the poll interval, as the daemon would do. The report (--report) is JSON."""

import argparse
import inspect
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.chaos import workflow as chaos

ACTIVE = ("received", "running", "committing", "verifying", "failed")
INBOX_SENSOR = "invoice_matching__on_new_invoice"


def inbox_names(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    return {p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".")}


def progress(db: Any, inbox: Path) -> dict[str, Any]:
    from agent_pipelines.framework.tables import inbox_files, intents

    with db.connect() as conn:
        states = dict(conn.execute(select(intents.c.state, func.count()).group_by(intents.c.state)).all())
        known = set(conn.execute(select(inbox_files.c.name).join(
            intents, intents.c.intent_id == inbox_files.c.intent_id)
            .where(inbox_files.c.sensor == INBOX_SENSOR)).scalars())
    missing = sorted(inbox_names(inbox) - known)
    active = sum(n for s, n in states.items() if s in ACTIVE)
    return {"states": states, "missing_files": len(missing), "active": active,
            "settled": active == 0 and not missing}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--kill-at", choices=sorted(chaos.KILL_POINTS), default=None)
    ap.add_argument("--tool-fault-p", type=float, default=0.0)
    ap.add_argument("--lost-ack-p", type=float, default=0.0)
    ap.add_argument("--tool-timeout-s", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-control", default=None, help="SQLite: no growth while this file exists")
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--backoff", type=float, default=0.0)
    ap.add_argument("--loop", action="store_true")
    ap.add_argument("--deadline", type=float, default=120.0)
    ap.add_argument("--poll", type=float, default=0.5)
    ap.add_argument("--report", default=None)
    ap.add_argument("--gate", default=None, help="get ready (imports, definitions, instance), write "
                    "<report>.ready, then wait for this file to exist before the first tick")
    args = ap.parse_args(argv)

    import dagster as dg

    from agent_pipelines import runner
    from agent_pipelines.framework.runtime import database
    from agent_pipelines.settings import Settings

    state = Path(args.state_dir)
    settings = Settings.from_env(state).model_copy(update={"lease_seconds": args.lease,
                                                           "recovery_backoff_s": args.backoff})
    chaos.CONFIG.kill_at = args.kill_at
    chaos.CONFIG.kill_marker = Path(args.report + ".killed") if args.report else None
    chaos.CONFIG.tool_fault_p, chaos.CONFIG.lost_ack_p = args.tool_fault_p, args.lost_ack_p
    chaos.CONFIG.tool_timeout_s, chaos.CONFIG.seed = args.tool_timeout_s, args.seed

    report: dict[str, Any] = {"ticks": 0, "runs": 0, "failed_runs": 0, "tick_errors": [], "settled": False,
                              "faults": chaos.CONFIG.counts}

    def write_report() -> None:
        if args.report:
            Path(args.report).write_text(json.dumps(report, indent=1, default=str))

    defs = None
    if args.gate:
        # Warm up before the gate opens, so the tick itself starts at once (several drivers together,
        # or the next driver while the previous one runs): what the first run would import lazily.
        import great_expectations  # noqa: F401
        import pandas  # noqa: F401

        defs = chaos.build_chaos_definitions(settings)
        if args.report:
            Path(args.report + ".ready").write_text("ready")
        gate_deadline = time.monotonic() + args.deadline
        while not Path(args.gate).exists():
            if time.monotonic() > gate_deadline:
                print(f"the gate {args.gate} never opened", file=sys.stderr)
                return 3
            time.sleep(0.05)
    started = time.monotonic()
    deadline = started + args.deadline
    db = None
    while True:
        try:
            if db is None:  # the first connection migrates: the database may be down right now
                db = database(settings.db_url)
                if args.lost_ack_p > 0:
                    chaos.attach_lost_acks(db.engine)
                if args.full_control:
                    chaos.attach_page_limit(db.engine, Path(args.full_control))
                defs = defs or chaos.build_chaos_definitions(settings)
                instance = dg.DagsterInstance.get()
                params = inspect.signature(runner.tick).parameters
            ticks = runner.tick(defs, instance, db) if "db" in params else runner.tick(defs, instance)
            report["ticks"] += 1
            for t in ticks:
                report["runs"] += len(t.runs)
                report["failed_runs"] += sum(not r.success for r in t.runs)
        except Exception as exc:  # noqa: BLE001 - a daemon tick fails and the next one follows
            report["tick_errors"].append(f"{type(exc).__name__}: {str(exc)[:300]}")
            print(f"tick failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            traceback.print_exc(file=sys.stderr)
        if not args.loop:
            break
        try:
            if db is not None:
                now = progress(db, settings.invoice_inbox)
                report["progress"] = now
                if now["settled"]:
                    report["settled"] = True
                    break
        except Exception as exc:  # noqa: BLE001
            print(f"progress probe failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if time.monotonic() > deadline:
            break
        write_report()
        time.sleep(args.poll)
    if not args.loop and db is not None:
        try:
            report["progress"] = progress(db, settings.invoice_inbox)
            report["settled"] = report["progress"]["settled"]
        except Exception as exc:  # noqa: BLE001
            report["tick_errors"].append(f"progress: {type(exc).__name__}: {exc}")
    report["seconds"] = round(time.monotonic() - started, 1)
    write_report()
    print(json.dumps({k: report[k] for k in ("ticks", "runs", "failed_runs", "settled", "seconds")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
