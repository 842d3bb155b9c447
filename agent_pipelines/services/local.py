"""The local stand-ins for the external systems, as the demo and a developer run them.

An external tool finds its service at AGENT_PIPELINES_<SERVICE>_URL (framework.external.service_url).
- `local_services(state_dir)` (`demo`, `tick`, `ui`): any service whose URL is not set is started in a
  thread of this process on a free port, and its URL is set for as long as the block runs. With a state
  folder its records are kept in `<state>/services/<name>.json`, so the next command's stand-in holds
  what earlier runs did. A URL already set (a real sandbox, or `agent-pipelines services`) is used as is.
  Two commands at once on one state folder would each run a stand-in: use `agent-pipelines services`.
- `agent-pipelines services` serves them on fixed ports in the foreground, for the daemon's run
  workers, which are other processes.
Each workflow seeds the records it needs with `seed` (the services' admin endpoints upsert by id)."""

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from agent_pipelines.framework.external import seed_service, service_url, service_url_var
from agent_pipelines.services.crm import CrmState, crm_app
from agent_pipelines.services.faults import ServiceState
from agent_pipelines.services.harness import serve
from agent_pipelines.services.payments import PaymentsState, payments_app

SERVICES: dict[str, tuple[Callable[[], ServiceState], Callable[[Any], Starlette]]] = {
    "payments": (PaymentsState, payments_app), "crm": (CrmState, crm_app)}


def service_app(name: str, state_dir: Path | None = None) -> Starlette:
    """The stand-in for `name`, its records kept under `state_dir` when one is given."""
    make_state, make_app = SERVICES[name]
    state = make_state()
    if state_dir is not None:
        state.attach(Path(state_dir) / "services" / f"{name}.json")
    return make_app(state)
DEFAULT_PORTS = {"payments": 8711, "crm": 8712}


@contextmanager
def local_services(state_dir: Path | None = None,
                   names: tuple[str, ...] = tuple(SERVICES)) -> Iterator[dict[str, str]]:
    """{service: base URL} for `names`, starting the ones not configured; their URL variables are
    restored when the block ends."""
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        for name in names:
            var = service_url_var(name)
            if os.environ.get(var):
                urls[name] = service_url(name)
                continue
            served = stack.enter_context(serve(service_app(name, state_dir)))
            stack.callback(os.environ.pop, var, None)
            os.environ[var] = urls[name] = served.base_url
        yield urls


def seed(service: str, path: str, records: list[dict[str, Any]]) -> Any:
    """POST `records` to an admin endpoint of a configured service (e.g. payments /_admin/orders)."""
    return seed_service(service, path, records)
