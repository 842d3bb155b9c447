"""The local stand-ins for the external systems, as the demo and a developer run them.

An external tool finds its service at AGENT_PIPELINES_<SERVICE>_URL (framework.external.service_url).
- `local_services()` (the demo, tests): any service whose URL is not set is started in a thread of this
  process on a free port, and its URL is set for as long as the block runs. A URL already set (a real
  sandbox, or `agent-pipelines services`) is used as is.
- `agent-pipelines services` serves them on fixed ports in the foreground, for the daemon's run
  workers, which are other processes.
Each workflow seeds the records it needs with `seed` (the services' admin endpoints upsert by id)."""

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from starlette.applications import Starlette

from agent_pipelines.framework.external import (
    seed_service,
    service_url,
    service_url_var,
)
from agent_pipelines.services.crm import crm_app
from agent_pipelines.services.harness import serve
from agent_pipelines.services.payments import payments_app

SERVICES: dict[str, Callable[[], Starlette]] = {"payments": payments_app, "crm": crm_app}
DEFAULT_PORTS = {"payments": 8711, "crm": 8712}


@contextmanager
def local_services(names: tuple[str, ...] = tuple(SERVICES)) -> Iterator[dict[str, str]]:
    """{service: base URL} for `names`, starting the ones not configured; their URL variables are
    restored when the block ends."""
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for name in names:
            var = service_url_var(name)
            if os.environ.get(var):
                urls[name] = service_url(name)
                continue
            served = stack.enter_context(serve(SERVICES[name]()))
            stack.callback(os.environ.pop, var, None)
            os.environ[var] = urls[name] = served.base_url
        yield urls


def seed(service: str, path: str, records: list[dict[str, Any]]) -> Any:
    """POST `records` to an admin endpoint of a configured service (e.g. payments /_admin/orders)."""
    return seed_service(service, path, records)
