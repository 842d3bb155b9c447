"""`agent-pipelines trace show|access`: an intent's or a run's trace (state history, tool calls, LLM calls,
policy decisions, writes), every read of it logged in `trace_access` (framework/access.py), and that log."""

import getpass
import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from agent_pipelines.cli_common import AsJson, StateDir, console
from agent_pipelines.cli_common import open_project as _open


trace_app = typer.Typer(no_args_is_help=True, help=(
    "An intent's or a run's trace, redacted; each read is logged (who, what, when) in trace_access."))


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace")


def cli_actor(project: Any) -> str:
    """Who reads from this terminal: the reviewer whose token is in AGENT_PIPELINES_REVIEWER_TOKEN when it
    authenticates, else the operating-system user (`cli:<user>`)."""
    from agent_pipelines.framework import reviewers

    token = os.environ.get(reviewers.TOKEN_ENV)
    if token:
        try:
            return reviewers.authenticate(project.db, project.approval_key, token).name
        except reviewers.ReviewerRefused:
            pass
    try:
        user = getpass.getuser()
    except OSError:  # no user name in the environment or the password database
        user = "unknown"
    return f"cli:{user}"


def log_cli_read(project: Any, what: str, *, intent_id: str | None = None, run_id: str | None = None,
                 approval_id: str | None = None) -> None:
    from agent_pipelines.framework import access

    access.log_read(project.db, actor=cli_actor(project), via=access.Via.CLI, what=what, intent_id=intent_id,
                    run_id=run_id, approval_id=approval_id)


def _rows(conn: Any, table: Any, intent_id: str | None, run_id: str | None, order: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    stmt = select(table).order_by(order)
    if intent_id is not None:
        stmt = stmt.where(table.c.intent_id == intent_id)
    if run_id is not None:
        stmt = stmt.where(table.c.run_id == run_id)
    return [dict(r) for r in conn.execute(stmt).mappings()]


def collect(project: Any, intent_id: str | None, run_id: str | None) -> dict[str, Any] | None:
    """The trace, redacted like the trace tables (the ledger's before/after and the intake too); None if
    nothing is known about that intent or run."""
    from agent_pipelines.framework import tables as t
    from agent_pipelines.framework.redaction import redact
    from agent_pipelines.workflows import all_workflows

    with project.db.connect() as conn:
        intent = _rows(conn, t.intents, intent_id, None, t.intents.c.intent_id) if intent_id else []
        out: dict[str, Any] = {
            "intent_id": intent_id, "run_id": run_id, "intent": intent[0] if intent else None,
            "transitions": _rows(conn, t.intent_transitions, intent_id, run_id, t.intent_transitions.c.id),
            "tool_calls": _rows(conn, t.tool_calls, intent_id, run_id, t.tool_calls.c.id),
            "llm_calls": _rows(conn, t.llm_calls, intent_id, run_id, t.llm_calls.c.id),
            "policy_decisions": _rows(conn, t.policy_decisions, intent_id, run_id, t.policy_decisions.c.id),
            "writes": _rows(conn, t.writes, intent_id, run_id, t.writes.c.id)}
    if out["intent"] is None and not any(out[k] for k in ("transitions", "tool_calls", "llm_calls", "writes")):
        return None
    names = {r["workflow"] for k in ("tool_calls", "llm_calls", "writes") for r in out[k]}
    if out["intent"] is not None:
        names.add(out["intent"]["workflow"])
    fields = tuple(f for wf in all_workflows() if wf.name in names for f in wf.policy.data_handling.redact_fields)
    return redact(json.loads(json.dumps(out, default=str)), fields=fields)


@trace_app.command("show")
def trace_show(intent_id: Annotated[str | None, typer.Argument(help="the intent")] = None,
               run: Annotated[str | None, typer.Option("--run", help="only this run (or: every intent of it)")] = None,
               state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """The trace of an intent (optionally of one run), or of every intent of a run (--run alone)."""
    if intent_id is None and run is None:
        console.print("[bold red]refused:[/] name an intent, a run (--run), or both")
        raise typer.Exit(1)
    project = _open(state_dir)
    found = collect(project, intent_id, run)
    if found is None:
        console.print(f"[bold red]not found:[/] nothing is recorded for {intent_id or ''} {run or ''}".rstrip())
        raise typer.Exit(1)
    log_cli_read(project, "trace show", intent_id=intent_id, run_id=run)  # logged before anything is shown
    if as_json:
        sys.stdout.write(json.dumps(found, sort_keys=True) + "\n")
        return
    console.print_json(json.dumps(found))


@trace_app.command("access")
def trace_access(intent_id: Annotated[str | None, typer.Argument(help="only reads of this intent")] = None,
                 state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Who read which trace, when, and through what (newest first)."""
    from agent_pipelines.framework import access

    rows = access.reads(_open(state_dir).db, intent_id=intent_id)
    if as_json:
        sys.stdout.write(json.dumps({"reads": rows}, default=str, sort_keys=True) + "\n")
        return
    t = Table(title=f"{len(rows)} trace read(s)")
    for col in ("at", "actor", "via", "what", "intent_id", "run_id", "approval_id"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["at"]), r["actor"], r["via"], r["what"], r["intent_id"] or "", r["run_id"] or "",
                  r["approval_id"] or "")
    console.print(t)
