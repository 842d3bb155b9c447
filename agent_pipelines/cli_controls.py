"""`agent-pipelines killswitch|mode|shadow`: the operator's controls over writes (kill switches, rollout
modes) and the shadow report of what shadow-mode runs would have written."""

import json
import os
from typing import Annotated

import typer
from rich.table import Table

from agent_pipelines.cli_common import AsJson, StateDir, console
from agent_pipelines.cli_common import emit as _emit
from agent_pipelines.cli_common import open_project as _open
from agent_pipelines.cli_common import refused as _refused


def register(app: typer.Typer) -> None:
    app.add_typer(killswitch_app, name="killswitch")
    app.add_typer(mode_app, name="mode")
    app.add_typer(shadow_app, name="shadow")


killswitch_app = typer.Typer(no_args_is_help=True, help=(
    "Stop writes at once: global, per workflow (--workflow) or per tool (--tool). In-flight intents park; "
    "sensors stop launching for that scope; turning it off resumes the parked intents on the next tick."))
WorkflowOpt = Annotated[str | None, typer.Option("--workflow", help="one workflow (default: all)")]
ToolOpt = Annotated[str | None, typer.Option("--tool", help="one tool, in every workflow")]
OperatorOpt = Annotated[str, typer.Option("--as", help="who is changing it (recorded)")]


def _operator(actor: str | None) -> str:
    return actor or f"cli:{os.environ.get('USER', 'unknown')}"


def _known_scope(workflow: str | None, tool: str | None) -> None:
    from agent_pipelines.workflows import all_workflows

    wfs = all_workflows()
    if workflow and workflow not in {wf.name for wf in wfs}:
        _refused(f"unknown workflow {workflow!r}; known: {sorted(wf.name for wf in wfs)}")
    if tool and not any(wf.policy.allows_tool(tool) for wf in wfs):
        _refused(f"no workflow's policy allows a tool {tool!r}")
    if workflow and tool:
        _refused("give --workflow or --tool, not both")


@killswitch_app.command("on")
def killswitch_on(reason: Annotated[str, typer.Option("--reason", help="why (shown in skip reasons and the trace)")],
                  workflow: WorkflowOpt = None, tool: ToolOpt = None, actor: OperatorOpt = "",
                  state_dir: StateDir = None) -> None:
    """Engage a kill switch: from the next tool call on, no write in its scope passes."""
    from agent_pipelines.framework import controls

    _known_scope(workflow, tool)
    project = _open(state_dir)
    try:
        key = controls.set_kill_switch(project.db, on=True, actor=_operator(actor), workflow=workflow, tool=tool,
                                       reason=reason)
    except ValueError as exc:
        _refused(str(exc))
    console.print(f"kill switch [bold]{key}[/] is ON: no write in its scope passes; in-flight intents park")


@killswitch_app.command("off")
def killswitch_off(workflow: WorkflowOpt = None, tool: ToolOpt = None, actor: OperatorOpt = "",
                   reason: Annotated[str | None, typer.Option("--reason")] = None, state_dir: StateDir = None) -> None:
    """Release a kill switch; the intents it parked resume on the next sensor tick."""
    from agent_pipelines.framework import controls

    _known_scope(workflow, tool)
    project = _open(state_dir)
    key = controls.set_kill_switch(project.db, on=False, actor=_operator(actor), workflow=workflow, tool=tool,
                                   reason=reason)
    n = len(controls.releasable(project.db))
    console.print(f"kill switch [bold]{key}[/] is off; {n} parked intent(s) resume on the next tick "
                  f"(`agent-pipelines tick`, or the daemon's killswitch__on_release sensor)")


@killswitch_app.command("status")
def killswitch_status(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Kill switches and rollout modes, and the intents parked now."""
    from agent_pipelines.framework import controls

    project = _open(state_dir)
    rows = controls.status(project.db)
    parked = project.status().intents.get("parked", 0)
    if as_json:
        _emit({"controls": rows, "parked_intents": parked})
        return
    t = Table(title=f"controls ({parked} parked intent(s))")
    for col in ("key", "value", "reason", "changed_by", "changed_at"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["key"], r["value"], r["reason"] or "", r["changed_by"], str(r["changed_at"]))
    console.print(t)


mode_app = typer.Typer(no_args_is_help=True, help="Rollout modes: read_only, shadow, limited, full (pinned per run).")


@mode_app.command("set")
def mode_set(workflow: str, mode: str, reason: Annotated[str | None, typer.Option("--reason")] = None,
             actor: OperatorOpt = "", state_dir: StateDir = None) -> None:
    """Set the mode new runs of WORKFLOW are pinned to (runs already launched keep theirs)."""
    from agent_pipelines.framework import controls
    from agent_pipelines.framework.policy import Mode

    _known_scope(workflow, None)
    if mode not in {m.value for m in Mode}:
        _refused(f"unknown mode {mode!r}; one of {[m.value for m in Mode]}")
    project = _open(state_dir)
    controls.set_mode(project.db, workflow, Mode(mode), actor=_operator(actor), reason=reason)
    console.print(f"{workflow}: new runs are pinned to mode [bold]{mode}[/]")


@mode_app.command("show")
def mode_show(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """The mode each workflow's new runs get (the operator's setting, else the policy pack's)."""
    from agent_pipelines.framework import controls
    from agent_pipelines.workflows import all_workflows

    project = _open(state_dir)
    modes = {wf.name: str(controls.current_mode(project.db, wf.name, wf.policy.rollout.mode)) for wf in all_workflows()}
    if as_json:
        _emit({"modes": modes})
        return
    for name, mode in sorted(modes.items()):
        console.print(f"{name}: {mode}")


shadow_app = typer.Typer(no_args_is_help=True, help="Compare what shadow-mode runs would have written with what humans did.")


@shadow_app.command("report")
def shadow_report(workflow: WorkflowOpt = None, state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Each shadow write next to the real record now: match, differs or missing."""
    import agent_pipelines.schema  # noqa: F401 - registers the systems-of-record tables
    from agent_pipelines.framework import shadow
    from agent_pipelines.framework.redaction import redact

    project = _open(state_dir)
    rows = shadow.report(project.db, workflow)
    counts = shadow.summary(rows)
    if as_json:
        _emit({"summary": counts, "writes": redact([r.model_dump(mode="json") for r in rows])})
        return
    t = Table(title="shadow writes vs the real tables: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for col in ("workflow", "action", "record", "status", "differences"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r.workflow, r.action, f"{r.table}:{r.key}", r.status,
                  json.dumps(redact(r.differences), default=str) if r.differences else "")
    console.print(t)
