"""Fixtures and helpers of the external-write tests (tests/external/): the local payments and CRM services on free ports (seeded), a
gateway over the external tools, the ledger row of an intent, and the crash worker's command line."""

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import select

from agent_pipelines.framework.db import Database
from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.tools import Tool, ToolRegistry
from agent_pipelines.framework.policy import Mode, PolicyPack
from agent_pipelines.framework.tables import writes
from agent_pipelines.services.crm import crm_app
from agent_pipelines.services.harness import Served, serve
from agent_pipelines.services.payments import payments_app
from tests.support import wait_until

WORKFLOW = "external_test"
ORDERS = [{"id": f"O-{i}", "captured_cents": 10_000} for i in range(200)]
OPPORTUNITIES = [{"id": f"OP-{i}", "stage": "qualify", "next_step": "call back", "owner": "ana",
                  "amount_cents": 500_000} for i in range(200)]


@pytest.fixture
def payments(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    with serve(payments_app()) as served:
        served.admin("/_admin/orders", ORDERS)
        monkeypatch.setenv("AGENT_PIPELINES_PAYMENTS_URL", served.base_url)
        yield served


@pytest.fixture
def crm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    with serve(crm_app()) as served:
        served.admin("/_admin/opportunities", OPPORTUNITIES)
        monkeypatch.setenv("AGENT_PIPELINES_CRM_URL", served.base_url)
        yield served


def gateway(db: Database, tools: list[Tool], intent_id: str, mode: Mode = Mode.FULL, **pack: Any) -> ToolGateway:
    policy = PolicyPack(workflow=WORKFLOW, version="1", allowed_tools=tuple(t.name for t in tools), **pack)
    return ToolGateway.open(ToolRegistry(tools), policy, db, intent_id=intent_id, run_id=f"run-{intent_id}",
                            mode=mode)


def settled(served: Served) -> None:
    """Recovery comes a lease after the crash: by then the service has applied or dropped whatever the
    crashed writer sent. Here: until the service handles no request (it counts them), not a sleep."""
    wait_until("no request in flight", lambda: served.effects()["in_flight"] == 0, timeout_s=120)



def with_sleep(tool: Tool, sleep: Callable[[float], Any]) -> Tool:
    """The tool with its retry waits handed to `sleep` (a list's append records them: assert Retry-After,
    never wall-clock)."""
    assert tool.external is not None
    return replace(tool, external=replace(tool.external, sleep=sleep))


def ledger(db: Database, intent_id: str) -> dict[str, Any] | None:
    with db.connect() as conn:
        row = conn.execute(select(writes).where(writes.c.intent_id == intent_id)).mappings().first()
    return dict(row) if row else None


def worker_command(db_url: str, tool: str, intent_id: str, params: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "tests.external.worker", db_url, tool, intent_id, json.dumps(params)]


def worker_env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
