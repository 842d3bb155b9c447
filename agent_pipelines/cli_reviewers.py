"""`agent-pipelines reviewers …` and `agent-pipelines audit verify`, and the token login the approval
commands use: who decides is proven by a personal token, never taken from a free string."""

import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from agent_pipelines.cli_common import StateDir, console
from agent_pipelines.cli_common import open_project as _open
from agent_pipelines.cli_common import refused as _refused


reviewers_app = typer.Typer(no_args_is_help=True, help=(
    "Reviewer identities: a personal token per person (only its hash is stored). Who may decide a "
    "workflow's approvals is still its policy pack's `approval.approvers`."))
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained approval audit trail.")


def authenticated(project: Any, claimed: str | None) -> Any:
    """The reviewer the token proves (env AGENT_PIPELINES_REVIEWER_TOKEN, else a hidden prompt on a
    terminal). `--as`, when given, is only a cross-check: a mismatch refuses, it never picks the identity."""
    from agent_pipelines.framework import reviewers

    token = os.environ.get(reviewers.TOKEN_ENV)
    if not token and sys.stdin.isatty():
        token = typer.prompt("reviewer token", hide_input=True)
    try:
        reviewer = reviewers.authenticate(project.db, project.approval_key, token)
    except reviewers.ReviewerRefused as exc:
        _refused(str(exc))
    if claimed is not None and claimed.strip() != reviewer.name:
        _refused(f"--as {claimed!r} does not match the token's reviewer {reviewer.name!r}; nothing changed")
    return reviewer


@reviewers_app.command("add")
def reviewers_add(name: str, roles: Annotated[list[str] | None, typer.Option("--role", help="descriptive role")] = None,
                  state_dir: StateDir = None) -> None:
    """Register a reviewer and print their personal token once (store it; it cannot be shown again)."""
    from agent_pipelines.framework import reviewers

    project = _open(state_dir)
    try:
        reviewer, token = reviewers.add(project.db, project.approval_key, name, tuple(roles or ()))
    except reviewers.ReviewerRefused as exc:
        _refused(str(exc))
    sys.stderr.write(f"reviewer {reviewer.name} added (token id {reviewer.token_id}); the token is shown once:\n")
    sys.stdout.write(token + "\n")


@reviewers_app.command("list")
def reviewers_list(state_dir: StateDir = None) -> None:
    """Reviewers and their tokens' ids (never the tokens), active and revoked."""
    from agent_pipelines.framework import reviewers

    t = Table(title="reviewers")
    for col in ("name", "roles", "token id", "created", "revoked"):
        t.add_column(col)
    for r in reviewers.listing(_open(state_dir).db):
        t.add_row(r["name"], ", ".join(r["roles"]), r["token_id"], str(r["created_at"]), str(r["revoked_at"] or ""))
    console.print(t)


@reviewers_app.command("revoke")
def reviewers_revoke(name: str, state_dir: StateDir = None) -> None:
    """Revoke a reviewer's tokens: from now on they authenticate nothing."""
    from agent_pipelines.framework import reviewers

    project = _open(state_dir)
    n = reviewers.revoke(project.db, project.approval_key, name)
    if n == 0:
        _refused(f"{name} has no active token")
    console.print(f"{name}: {n} token(s) revoked")


@audit_app.command("verify")
def audit_verify(state_dir: StateDir = None) -> None:
    """Walk the approval audit chain and check the approval tables against it; exit 1 at the first break."""
    from agent_pipelines.framework import audit

    project = _open(state_dir)
    report = audit.verify(project.db, project.approval_key)
    sys.stdout.write(report.line() + "\n")
    raise typer.Exit(0 if report.intact else 1)
