"""Configurable misbehaviour shared by the local services: latency, 429/5xx (by rate or by a scripted
sequence), and losing or holding the response after the effect was applied.

Only requests that change state ("writes") are subject to status faults and to lost responses: a
read-back must be able to see what happened, which is the point of the exercise."""

import asyncio
import json
import os
import random
import threading
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

HOLD_LIMIT_S = 60.0  # a held response waits at most this long for its client to go away


class AfterEffect(StrEnum):
    RESPOND = "respond"  # the normal case
    # Apply the effect, then answer nothing until the client goes away: its read timeout fires, or its
    # process was killed (a test waits for the effect in the service's state, then kills it).
    LOSE = "lose"


class Faults(BaseModel):
    latency_s: float = 0.0
    error_rate: float = 0.0              # share of writes answered 429/503 before any effect
    error_status: int = 503
    script: list[int] = []               # statuses for the next writes, in order (before any effect)
    retry_after_s: int | None = None     # Retry-After sent with 429/503
    after_effect: AfterEffect = AfterEffect.RESPOND
    after_effect_count: int = 0          # how many applied writes get `after_effect` (then RESPOND)
    seed: int = 0


class ServiceState:
    """A service's own records: plain JSON-able attributes (`persisted`) under one lock. Attached to a
    file, the state is loaded from it and saved after every request that may change it, so a stand-in
    restarted by the next `demo` or `tick` still holds what earlier runs did (the verify step and a
    recovery's read-back look there). Unattached (the tests), it lives in memory."""

    persisted: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq = 0  # the last id handed out
        self.path: Path | None = None

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def attach(self, path: Path) -> "ServiceState":
        self.path = path
        if path.exists():
            saved = json.loads(path.read_text())
            with self.lock:
                self.seq = saved["seq"]
                for name in self.persisted:
                    setattr(self, name, saved[name])
        return self

    def save(self) -> None:
        if self.path is None:
            return
        with self.lock:
            data = json.dumps({"seq": self.seq, **{name: getattr(self, name) for name in self.persisted}})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(data)
        os.replace(tmp, self.path)  # a reader never sees half a file


class SaveAfterWrites:
    """ASGI middleware: save the state after every request other than a GET (admin seeds included)."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http" and scope["method"] != "GET":
                self.state.save()


class CountInFlight:
    """ASGI middleware: how many requests (admin ones aside) the service is handling right now. A test
    waits for none before it recovers, as a recovery run comes a lease after the crash: a request the
    crashed writer sent is then applied or dropped, never still on its way."""

    def __init__(self, app: ASGIApp, box: "FaultBox") -> None:
        self.app, self.box = app, box

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            return await self.app(scope, receive, send)
        self.box.in_flight += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.box.in_flight -= 1


class FaultBox:
    """The current faults of one service, changed by tests through the admin endpoint or directly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults = Faults()
        self._rng = random.Random(0)
        self.injected: dict[str, int] = {}
        self.writes_seen = 0  # write requests that reached the service (a kill switch test wants 0)
        self.in_flight = 0

    def set(self, faults: Faults) -> None:
        with self._lock:
            self.faults, self._rng = faults, random.Random(faults.seed)

    def _count(self, what: str) -> None:
        self.injected[what] = self.injected.get(what, 0) + 1

    async def before_write(self) -> Response | None:
        """A refusal that happens before the effect (None: go on and apply it)."""
        f = self.faults
        with self._lock:
            self.writes_seen += 1
        if f.latency_s:
            await asyncio.sleep(f.latency_s)
        with self._lock:
            if f.script:
                status = f.script.pop(0)
            elif f.error_rate and self._rng.random() < f.error_rate:
                status = f.error_status
            else:
                return None
            self._count(str(status))
        headers = {"Retry-After": str(f.retry_after_s)} if f.retry_after_s is not None else {}
        return JSONResponse({"error": "injected", "status": status}, status_code=status, headers=headers)

    def after_effect(self) -> AfterEffect:
        with self._lock:
            f = self.faults
            if f.after_effect_count <= 0:
                return AfterEffect.RESPOND
            f.after_effect_count -= 1
            self._count(str(f.after_effect))
            return f.after_effect

    async def deliver(self, request: Request, response: Response) -> Response:
        """Send `response`, unless this write's response is to be lost: then wait until the client gives
        up and answer into the void."""
        if self.after_effect() == AfterEffect.RESPOND:
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_LIMIT_S
        while not await request.is_disconnected() and loop.time() < deadline:
            await asyncio.sleep(0.02)  # polling the connection, not timing a race
        return response


def service_app(routes: list[Route], state: ServiceState, fx: "FaultBox") -> Starlette:
    """A stand-in service: its own routes plus the admin ones every service has (set the faults; count
    the effects from its own state, so a test sees duplicates), counting requests in flight."""

    async def set_faults(request: Request) -> Response:
        fx.set(Faults.model_validate(await request.json()))
        return JSONResponse(fx.faults.model_dump())

    async def effects(request: Request) -> Response:
        return JSONResponse({**state.effects(), "injected": dict(fx.injected), "writes_seen": fx.writes_seen,
                             "in_flight": fx.in_flight})

    app = Starlette(middleware=[Middleware(SaveAfterWrites, state=state), Middleware(CountInFlight, box=fx)], routes=[
        *routes,
        Route("/_admin/faults", set_faults, methods=["POST"]),
        Route("/_admin/effects", effects, methods=["GET"]),
    ])
    app.state.service, app.state.faults = state, fx
    return app
