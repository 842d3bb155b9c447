"""The tool gateway: the only path from a workflow to a system of record.

Every call is checked against the workflow's policy (deny by default), its parameters validated by
the tool's pydantic model, run under a per-tool timeout, retried with capped exponential backoff and
jitter when the error is transient (fail-fast otherwise), and recorded in the trace. Writes go
through the ledger, so each (intent, action) lands once."""

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from agent_pipelines.framework.db import Database
from agent_pipelines.framework.ledger import WriteOutcome, WriteReceipt, apply_once
from agent_pipelines.framework.policy import Decision, PolicyDecision, PolicyPack
from agent_pipelines.framework.trace import Tracer


class ToolKind(StrEnum):
    READ = "read"
    WRITE = "write"


class Impact(StrEnum):
    LOW = "low"
    HIGH = "high"


class RetryableToolError(Exception):
    """A transient failure (timeout, connection reset, 503): the gateway retries it."""


class PermanentToolError(Exception):
    """A failure that will not go away by retrying (bad request, not found): fail fast."""


class ToolBlocked(Exception):
    """The policy does not allow this call; nothing was executed."""


class ToolTimeout(RetryableToolError):
    pass


@dataclass(frozen=True)
class Backoff:
    max_attempts: int = 4
    base_s: float = 0.2
    cap_s: float = 5.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential with 'equal jitter': within [d/2, d], d = min(cap, base * 2**(attempt-1))."""
        d = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return d / 2 + rng.uniform(0, d / 2)


@dataclass(frozen=True)
class Tool:
    """A typed tool. Read tools get a read connection; write tools get the ledger's transaction and
    return a WriteOutcome (touched record with before/after)."""

    name: str
    params: type[BaseModel]
    kind: ToolKind
    impact: Impact
    fn: Callable[[Connection, Any], Any]
    timeout_s: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: tuple[type[BaseException], ...] = (RetryableToolError, OperationalError)
    description: str = ""


class ToolRegistry:
    def __init__(self, tools: list[Tool] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools or []:
            self.register(t)

    def register(self, tool: Tool) -> Tool:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolBlocked(f"unknown tool {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._tools)


_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tool")


class ToolGateway:
    def __init__(self, registry: ToolRegistry, policy: PolicyPack, db: Database, tracer: Tracer, *,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> None:
        self.registry, self.policy, self.db, self.tracer = registry, policy, db, tracer
        self._sleep = sleep
        self._rng = rng or random.Random()

    # -- public API -------------------------------------------------------------------------------
    def read(self, name: str, params: BaseModel | dict[str, Any]) -> Any:
        tool, p = self._admit(name, params, ToolKind.READ)

        def call() -> Any:
            with self.db.connect() as conn:
                return tool.fn(conn, p)

        return self._run(tool, p, call)

    def write(self, name: str, params: BaseModel | dict[str, Any], *, action: str,
              approval_id: str | None = None) -> WriteReceipt:
        """Apply a write tool once per (intent, action) through the ledger."""
        tool, p = self._admit(name, params, ToolKind.WRITE)
        tr = self.tracer
        if tr.intent_id is None:
            raise PermanentToolError("writes need an intent (the idempotency key derives from it)")

        def call() -> WriteReceipt:
            def write(conn: Connection) -> WriteOutcome:
                return tool.fn(conn, p)

            return apply_once(self.db, workflow=tr.workflow, intent_id=tr.intent_id, action=action,
                              tool=tool.name, run_id=tr.run_id, write=write, approval_id=approval_id)

        return self._run(tool, p, call)

    # -- internals --------------------------------------------------------------------------------
    def _admit(self, name: str, params: BaseModel | dict[str, Any], kind: ToolKind) -> tuple[Tool, BaseModel]:
        raw = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
        if not self.policy.allows_tool(name):
            self._block(name, raw, "tool_not_allowed", f"{name!r} is not in the policy's allowed_tools")
        tool = self.registry.get(name)
        if tool.kind != kind:
            self._block(name, raw, "wrong_kind", f"{name!r} is a {tool.kind} tool")
        try:
            return tool, tool.params.model_validate(raw)
        except ValidationError as exc:
            self._block(name, raw, "invalid_params", str(exc))
        raise AssertionError("unreachable")

    def _block(self, name: str, raw: Any, rule: str, reason: str) -> None:
        decision = PolicyDecision(decision=Decision.DENY, rule=rule, reasons=(reason,), observed={"params": raw},
                                  policy_digest=self.policy.digest)
        self.tracer.policy(name, decision)
        self.tracer.tool_call(tool=name, kind="?", impact="?", params=raw, result=None, status="blocked",
                              error=reason, attempts=0, latency_ms=0.0)
        raise ToolBlocked(f"{name}: {reason}")

    def _run(self, tool: Tool, params: BaseModel, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            try:
                result = _POOL.submit(call).result(timeout=tool.timeout_s)
            except FutureTimeout:
                error: BaseException = ToolTimeout(f"{tool.name} timed out after {tool.timeout_s}s")
            except BaseException as exc:  # noqa: BLE001 - classified just below
                error = exc
            else:
                self._trace(tool, params, result, "ok", None, attempt, started)
                return result
            retryable = isinstance(error, tool.retry_on)
            if not retryable or attempt >= tool.backoff.max_attempts:
                self._trace(tool, params, None, "error", f"{type(error).__name__}: {error}", attempt, started)
                raise error
            self._sleep(tool.backoff.delay(attempt, self._rng))

    def _trace(self, tool: Tool, params: BaseModel, result: Any, status: str, error: str | None,
               attempts: int, started: float) -> None:
        self.tracer.tool_call(tool=tool.name, kind=tool.kind, impact=tool.impact,
                              params=params.model_dump(mode="json"), result=result, status=status, error=error,
                              attempts=attempts, latency_ms=(time.perf_counter() - started) * 1000)
