"""`agent-pipelines services`: the local stand-ins for the external systems (payments, CRM) on fixed
ports, in the foreground, for a daemon whose run workers call them from other processes."""

import threading
from contextlib import ExitStack
from typing import Annotated

import typer

from agent_pipelines.cli_common import AsJson, emit


def register(app: typer.Typer) -> None:
    @app.command("services")
    def services(host: Annotated[str, typer.Option("--host", help="bind address")] = "127.0.0.1",
                 payments_port: Annotated[int, typer.Option("--payments-port")] = 8711,
                 crm_port: Annotated[int, typer.Option("--crm-port")] = 8712,
                 as_json: AsJson = False) -> None:
        """Serve the local payments API and CRM until interrupted, and print the URL variables the
        workflows read (export them for `tick`, `ui` and the daemon). Their state is in memory."""
        from agent_pipelines.framework.external import service_url_var
        from agent_pipelines.services.harness import serve
        from agent_pipelines.services.local import SERVICES

        ports = {"payments": payments_port, "crm": crm_port}
        with ExitStack() as stack:
            urls = {name: stack.enter_context(serve(SERVICES[name](), host=host, port=ports[name])).base_url
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
