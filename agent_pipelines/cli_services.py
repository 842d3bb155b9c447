"""`agent-pipelines services`: the local stand-ins for the external systems (payments, CRM) on fixed
ports, in the foreground, for a daemon whose run workers call them from other processes."""

import threading
from contextlib import ExitStack
from typing import Annotated

import typer

from agent_pipelines.cli_common import AsJson, StateDir, emit, open_project


def register(app: typer.Typer) -> None:
    @app.command("services")
    def services(host: Annotated[str, typer.Option("--host", help="bind address")] = "127.0.0.1",
                 payments_port: Annotated[int, typer.Option("--payments-port")] = 8711,
                 crm_port: Annotated[int, typer.Option("--crm-port")] = 8712,
                 state_dir: StateDir = None, as_json: AsJson = False) -> None:
        """Serve the local payments API and CRM until interrupted, and print the URL variables the
        workflows read (export them for `tick`, `ui` and the daemon). Their records are kept in the
        state folder's services/ (the same ones `demo` and `tick` use when no URL is set)."""
        from agent_pipelines.framework.external import service_url_var
        from agent_pipelines.services.harness import serve
        from agent_pipelines.services.local import SERVICES, service_app

        ports = {"payments": payments_port, "crm": crm_port}
        with ExitStack() as stack:
            folder = open_project(state_dir).settings.state_dir
            urls = {name: stack.enter_context(serve(service_app(name, folder), host=host, port=ports[name])).base_url
                    for name in SERVICES}
            if as_json:
                emit({service_url_var(n): u for n, u in urls.items()})
            else:
                for name, url in urls.items():
                    typer.echo(f"export {service_url_var(name)}={url}")
                typer.echo("# Ctrl-C stops them")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
