"""What every `agent-pipelines` command module shares: the console, the --state-dir / --json options,
opening the project, printing JSON and refusing with a reason (exit 1)."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()

StateDir = Annotated[Path | None, typer.Option("--state-dir", help="state folder (default .agent_pipelines)")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def open_project(state_dir: Path | None):  # type: ignore[no-untyped-def]
    from agent_pipelines.project import Project  # imported per command: `--help` stays fast

    return Project.open(state_dir)


def emit(payload: dict[str, Any]) -> None:
    """One JSON object on one line (flushed: a caller may be reading a long-running command's output)."""
    sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")
    sys.stdout.flush()


def refused(message: str) -> NoReturn:
    # The message may quote input ("[...]" would read as markup); soft wrap keeps it on one line for scripts.
    console.print(f"[bold red]refused:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)
