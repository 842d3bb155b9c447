"""`agent-pipelines console`: serve the reviewer console (agent_pipelines/console) with uvicorn."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    @app.command("console")
    def console_cmd(port: Annotated[int, typer.Option("--port")] = 3200,
                    host: Annotated[str, typer.Option("--host", help="bind address")] = "127.0.0.1",
                    state_dir: Annotated[Path | None, typer.Option(
                        "--state-dir", help="state folder (default .agent_pipelines)")] = None) -> None:
        """Serve the reviewer console: the pending queue, each request's evidence and change, approve / deny / edit."""
        import uvicorn

        from agent_pipelines.console.app import create_app
        from agent_pipelines.project import Project

        project = Project.open(state_dir)
        console.print(f"reviewer console on http://{host}:{port} (links use {project.settings.console_url}); "
                      f"log in with your reviewer token")
        # No X-Forwarded-* rewriting: the client address is what the trusted-header check compares; serve
        # over https (AGENT_PIPELINES_CONSOLE_URL=https://…) to make the cookies Secure.
        uvicorn.run(create_app(project), host=host, port=port, log_level="info", proxy_headers=False)
