"""Test-only chaos variant of the invoice workflow and the definitions a chaos driver ticks.

Everything here is armed by `CONFIG`, set once by the driver process (tests/chaos/driver.py):

- kills: `os.kill(os.getpid(), SIGKILL)` at a named point. Step boundaries come from Dagster's public
  `success_hook` applied with `JobDefinition.with_hooks` (the op finished, its output is stored, the
  next op has not started); the points inside a step come from the workflow's own hooks and tools.
- tool faults: each tool call fails with probability p as a 429, a 503 (RetryableToolError) or a
  timeout (the call outlives the tool's timeout; a write still lands in the background).
- lost acknowledgements: SQLAlchemy `commit` event on our engine: the transaction that inserted a
  ledger row is committed on the DBAPI connection, then the caller gets a transient OperationalError.
- a full SQLite disk without tmpfs: `PRAGMA max_page_count` clamped while a control file exists.

No product code is patched: the workflow is a subclass, tools are wrapped copies, hooks and engine
events are public APIs, attached in the driver process only."""

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from agent_pipelines.framework.tools import RetryableToolError, ToolRegistry
from agent_pipelines.framework.jobs import AgentJobs, WorkflowJobs, build_jobs
from agent_pipelines.framework.tables import intents
from agent_pipelines.settings import Settings
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

# point -> (how it is reached, where)
KILL_POINTS: dict[str, tuple[str, str]] = {
    "after_read": ("op", "read"),
    "after_propose": ("op", "propose"),
    "after_validate": ("op", "validate"),
    "after_approve_gate": ("op", "approve_gate"),
    "commit_plan": ("hook", "plan_writes"),          # in commit, intent committing, before the plan is stored
    "commit_after_write_1": ("tool", "record_po_invoiced"),  # 1st write committed, 2nd not started
    "commit_after_write_2": ("tool", "schedule_payment"),    # 2 of 3 writes committed
    "commit_in_group": ("tool", "schedule_payment"),         # local tools: 2 of 3 writes run, none committed
    "after_commit": ("hook", "verify"),              # every write landed; verify has started
    "before_hand_off": ("op", "verify"),             # verified; hand off not started
}
# Points reached with the tools local, as shipped: an intent's writes then go together in one
# transaction (ToolGateway.write_all), and a kill inside it leaves none of them.
GROUPED = {"commit_in_group"}
BOUNDARIES = ["after_read", "after_propose", "after_validate", "after_approve_gate", "commit_after_write_1",
              "commit_after_write_2", "after_commit", "before_hand_off"]


@dataclass
class ChaosConfig:
    kill_at: str | None = None
    kill_marker: Path | None = None  # written just before the kill: point and where
    tool_fault_p: float = 0.0
    lost_ack_p: float = 0.0
    tool_timeout_s: float = 0.5
    seed: int = 0
    full_control: Path | None = None  # SQLite max_page_count fallback: "full" while this file exists
    counts: dict[str, int] = field(default_factory=dict)
    _rng: random.Random | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def roll(self, p: float) -> float | None:
        """A seeded draw: the value when it falls under p (a fault), else None."""
        if p <= 0:
            return None
        with self._lock:
            if self._rng is None:
                self._rng = random.Random(self.seed)
            x = self._rng.random()
        return x if x < p else None

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1


CONFIG = ChaosConfig()


def die(point: str, where: str) -> None:
    if CONFIG.kill_marker is not None:
        CONFIG.kill_marker.write_text(f"{point} {where}\n")
    os.kill(os.getpid(), signal.SIGKILL)


def armed(kind: str, name: str) -> bool:
    return CONFIG.kill_at is not None and KILL_POINTS.get(CONFIG.kill_at) == (kind, name)


@dg.success_hook(name="chaos_kill_at_step_boundary")
def kill_at_boundary(context: dg.HookContext) -> None:
    step = context.op.name.split("__", 1)[-1]
    if armed("op", step):
        die(CONFIG.kill_at or "", f"run {context.run_id} after op {context.op.name}")


class ChaosInvoiceMatching(InvoiceMatching):
    """The shipped invoice workflow with kill points and faulty tools."""

    def tools(self) -> ToolRegistry:
        registry = ToolRegistry()
        shipped = super().tools()
        # Not local, but at a GROUPED point: a chaotic tool sleeps past its timeout (a slow backend),
        # which only a pool thread's timeout ends (framework/deadline.py interrupts statements, not
        # sleeps). A kill point alone needs no sleep.
        local = CONFIG.kill_at in GROUPED and CONFIG.tool_fault_p == 0
        for name in shipped.names():
            tool = shipped.get(name)
            registry.register(replace(tool, fn=_chaotic(name, tool.fn, CONFIG.tool_timeout_s),
                                      timeout_s=min(tool.timeout_s, CONFIG.tool_timeout_s), local=local))
        return registry

    def plan_writes(self, intent_id, intake, context, proposal):  # type: ignore[no-untyped-def]
        if armed("hook", "plan_writes") and _state(intent_id) == "committing":
            die("commit_plan", f"intent {intent_id} in commit before its plan was stored")
        return super().plan_writes(intent_id, intake, context, proposal)

    def verify(self, step, intake, context, proposal, receipts):  # type: ignore[no-untyped-def]
        if armed("hook", "verify"):
            die("after_commit", f"intent {step.intent.intent_id} at the start of verify")
        return super().verify(step, intake, context, proposal, receipts)


def _state(intent_id: str) -> str | None:
    from agent_pipelines.framework.runtime import database

    url = os.environ["AGENT_PIPELINES_DB_URL"]
    with database(url).connect() as conn:
        return conn.execute(select(intents.c.state).where(intents.c.intent_id == intent_id)).scalar()


def _chaotic(name: str, fn: Any, timeout_s: float) -> Any:
    def call(conn, p):  # type: ignore[no-untyped-def]
        if armed("tool", name):
            die(CONFIG.kill_at or "", f"tool {name} about to run: the writes before it " + (
                "ran in its transaction, uncommitted" if CONFIG.kill_at in GROUPED else "committed"))
        x = CONFIG.roll(CONFIG.tool_fault_p)
        if x is not None:
            kind = ("429", "503", "timeout")[int(x / CONFIG.tool_fault_p * 3) % 3]
            CONFIG.count(f"tool_{kind}")
            if kind == "429":
                raise RetryableToolError(f"{name}: 429 Too Many Requests (chaos)")
            if kind == "503":
                raise RetryableToolError(f"{name}: 503 Service Unavailable (chaos)")
            # A slow backend: the gateway gives up on this attempt and retries while it still runs;
            # the attempt then completes (a write lands: the retry must find it in the ledger).
            time.sleep(timeout_s * 1.6)
        return fn(conn, p)

    return call


# -- database faults, attached to our engine in the driver process ---------------------------------
def attach_lost_acks(engine: Any) -> None:
    """With probability p, the transaction that inserted a ledger row commits and the caller is told
    the connection broke: the write landed, the acknowledgement was lost."""

    @event.listens_for(engine, "after_cursor_execute")
    def _flag(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("INSERT INTO WRITES") and cursor.rowcount == 1:
            conn.info["chaos_ledger_insert"] = True

    @event.listens_for(engine, "rollback")
    def _clear(conn):  # type: ignore[no-untyped-def]
        conn.info.pop("chaos_ledger_insert", None)

    @event.listens_for(engine, "commit")
    def _lose_ack(conn):  # type: ignore[no-untyped-def]
        if not conn.info.pop("chaos_ledger_insert", False) or CONFIG.roll(CONFIG.lost_ack_p) is None:
            return
        conn.connection.driver_connection.commit()  # the write is durable now
        CONFIG.count("lost_ack")
        raise OperationalError("COMMIT", {}, Exception(
            "server closed the connection unexpectedly (chaos: acknowledgement lost after commit)"))


def attach_page_limit(engine: Any, control: Path) -> None:
    """SQLite: while `control` exists the database cannot grow (SQLITE_FULL, 'database or disk is
    full'); removing it frees the 'disk'. Applied at the start of every transaction."""

    @event.listens_for(engine, "begin")
    def _limit(conn):  # type: ignore[no-untyped-def]
        full = control.exists()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {1 if full else 1073741823}")


# -- definitions -------------------------------------------------------------------------------------
def build_chaos_definitions(settings: Settings) -> dg.Definitions:
    """agent_pipelines.definitions.build_definitions with the chaos invoice workflow (same name, policy
    and jobs) whose jobs carry the kill hook."""
    from agent_pipelines.definitions import build_definitions, shipped_workflows

    shipped = shipped_workflows()
    invoices = ChaosInvoiceMatching()
    hooked = AgentJobs(*(job.with_hooks({kill_at_boundary}) for job in build_jobs(invoices)))
    shipped[invoices.name] = WorkflowJobs(invoices, hooked)
    return build_definitions(settings, shipped)
