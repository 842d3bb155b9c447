"""`agent-pipelines`: run the demo, tick the sensors, show status, open the Dagster UI."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console()

StateDir = Annotated[Path | None, typer.Option("--state-dir", help="state folder (default .agent_pipelines)")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _open(state_dir: Path | None):  # type: ignore[no-untyped-def]
    from agent_pipelines.project import Project

    return Project.open(state_dir)


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")


def _status_table(status: Any) -> Table:
    t = Table(title="intents by workflow and state")
    t.add_column("workflow")
    t.add_column("state")
    t.add_column("count", justify="right")
    for wf, states in sorted(status.by_workflow.items()):
        for state, n in sorted(states.items()):
            t.add_row(wf, state, str(n))
    return t


def _run_ticks(project: Any, until_idle: bool) -> dict[str, int]:
    totals = {"runs": 0, "failed_runs": 0, "skipped_existing": 0}
    while True:
        ticks = project.tick()
        runs = [r for t in ticks for r in t.runs]
        totals["runs"] += len(runs)
        totals["failed_runs"] += sum(not r.success for r in runs)
        totals["skipped_existing"] += sum(t.skipped_existing for t in ticks)
        if not until_idle or not runs:
            return totals


@app.command()
def demo(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Seed a system of record and an invoice inbox, then run what the sensors request."""
    from agent_pipelines.workflows.invoice_matching import demo_data

    project = _open(state_dir)
    with project.db.begin() as conn:
        demo_data.seed_system_of_record(conn)
    files = demo_data.write_inbox(project.settings.invoice_inbox)
    if not as_json:
        console.print(f"state: {project.settings.state_dir}  database: {project.db.dialect}  "
                      f"inbox: {len(files)} invoice files")
    with console.status("evaluating sensors and executing runs...", spinner="dots") if not as_json else _null():
        totals = _run_ticks(project, until_idle=True)
    status = project.status()
    if as_json:
        _emit({**status.model_dump(), **totals, "state_dir": str(project.settings.state_dir)})
        return
    t = Table(title="invoice_matching: one row per inbox intent")
    for col in ("source", "state", "reason"):
        t.add_column(col, overflow="fold")
    for row in project.intents("invoice_matching"):
        name = Path(row["source_ref"]).name
        t.add_row(name, row["state"], (row["reason"] or "")[:110])
    console.print(t)
    console.print(_status_table(status))
    console.print(f"runs executed: {totals['runs']} (failed: {totals['failed_runs']}, already launched: "
                  f"{totals['skipped_existing']})   writes: {status.writes}   "
                  f"duplicate_writes: {status.duplicate_writes}")


class _null:
    def __enter__(self) -> None: ...
    def __exit__(self, *a: object) -> None: ...


@app.command("tick")
def tick_cmd(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Evaluate every sensor once and execute the requested runs in-process (what the daemon does)."""
    project = _open(state_dir)
    ticks = project.tick()
    status = project.status()
    if as_json:
        _emit({**status.model_dump(), "ticks": [t.model_dump() for t in ticks]})
        return
    for t in ticks:
        ok = sum(r.success for r in t.runs)
        console.print(f"{t.sensor}: {t.requested} requested, {len(t.runs)} run ({ok} succeeded), "
                      f"{t.skipped_existing} already launched" + (f"; {t.skip_reason}" if t.skip_reason else ""))
    console.print(f"writes: {status.writes}   duplicate_writes: {status.duplicate_writes}")


@app.command()
def status(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Intents by workflow and state, writes, and duplicate writes (computed from the tables)."""
    project = _open(state_dir)
    st = project.status()
    if as_json:
        _emit(st.model_dump())
        return
    console.print(_status_table(st))
    console.print(f"writes: {st.writes}   duplicate_writes: {st.duplicate_writes}")


@app.command()
def ui(state_dir: StateDir = None, port: int = 3000) -> None:
    """Open the Dagster UI (webserver + daemon) on the same state as the CLI."""
    project = _open(state_dir)
    from agent_pipelines.project import REPO_ROOT

    env = {**os.environ, "DAGSTER_HOME": str(project.settings.dagster_home),
           "AGENT_PIPELINES_STATE_DIR": str(project.settings.state_dir)}
    console.print(f"DAGSTER_HOME={env['DAGSTER_HOME']}  http://127.0.0.1:{port}")
    raise typer.Exit(subprocess.call(["dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "-p", str(port)],
                                     cwd=REPO_ROOT, env=env))


def main() -> None:
    import warnings

    import dagster as dg

    # Dagster flags its own beta parameters at definition time; that is noise for a CLI user.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    app()
