"""Serve a local service on a free 127.0.0.1 port, in a thread of this process (tests, the demo)."""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from agent_pipelines.services.faults import Faults

START_TIMEOUT_S = 20.0


@dataclass
class Served:
    app: Starlette
    base_url: str

    def admin(self, path: str, payload: Any = None) -> Any:
        """POST `payload` (or GET when None) to an admin endpoint and return its JSON."""
        with httpx.Client(base_url=self.base_url, timeout=10.0) as c:
            r = c.get(path) if payload is None else c.post(path, json=payload)
            r.raise_for_status()
            return r.json()

    def faults(self, **fields: Any) -> None:
        self.admin("/_admin/faults", Faults(**fields).model_dump(mode="json"))

    def effects(self) -> dict[str, Any]:
        return self.admin("/_admin/effects")


@contextmanager
def serve(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> Iterator[Served]:
    """Bind the socket ourselves (port 0: a free one, no port race), run uvicorn on it, wait until it
    answers, stop it after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"service:{port}", daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(int(START_TIMEOUT_S / 0.05)):
        if server.started:
            started.set()
            break
        started.wait(0.05)
    if not started.is_set():
        raise RuntimeError(f"service on port {port} did not start within {START_TIMEOUT_S:.0f}s")
    try:
        yield Served(app, f"http://{host}:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
