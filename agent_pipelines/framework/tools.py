"""Tools: what a workflow may call through the gateway (framework/gateway.py), and the registry of them.

A Tool is a typed function with its kind (read or write), impact, timeout and retry rules; the errors
here are how a tool tells the gateway to retry, fail fast or stop. The registry also checks a policy
pack's provenance rules against its tools, once per pack."""

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from agent_pipelines.framework import provenance as prov
from agent_pipelines.framework.policy import PolicyPack

if TYPE_CHECKING:
    from agent_pipelines.framework.external import ExternalWrite


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


class ToolHeld(ToolBlocked):
    """Limited mode: a high-impact write without an approval is held, not executed."""


@dataclass(frozen=True)
class Backoff:
    max_attempts: int = 4
    base_s: float = 0.2
    cap_s: float = 5.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Exponential with 'equal jitter': within [d/2, d], d = min(cap, base * 2**(attempt-1))."""
        d = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return d / 2 + rng.uniform(0, d / 2)


T = TypeVar("T")


def retried(call: Callable[[], T], culprit: Callable[[], "Tool"], *, sleep: Callable[[float], None],
            rng: random.Random, final: tuple[type[BaseException], ...] = ()) -> tuple[T | None, int, BaseException | None]:
    """`call` until it returns, retried with the backoff of the tool that failed (`culprit`, asked after
    the failure) while its error is one of that tool's `retry_on`: (result, attempts, None), or (None,
    attempts, the last error). A `final` error is raised at once."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(), attempt, None
        except final:
            raise
        except BaseException as exc:  # noqa: BLE001 - classified just below
            error = exc
        tool = culprit()
        if not isinstance(error, tool.retry_on) or attempt >= tool.backoff.max_attempts:
            return None, attempt, error
        sleep(tool.backoff.delay(attempt, rng))


@dataclass(frozen=True)
class Tool:
    """A typed tool. Read tools get a read connection; write tools get the ledger's transaction and
    return a WriteOutcome (touched record with before/after). A read tool whose output is text from
    outside (an inbox, a fetched page, a shared document) says `untrusted_output=True`: its values are
    never a trusted source for the pack's provenance rules. A tool that only runs statements on the
    connection it is given says `local=True` (below)."""

    name: str
    params: type[BaseModel]
    kind: ToolKind
    impact: Impact
    fn: Callable[[Connection, Any], Any]
    timeout_s: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    retry_on: tuple[type[BaseException], ...] = (RetryableToolError, OperationalError)
    description: str = ""
    untrusted_output: bool = False
    external: "ExternalWrite | None" = None  # framework/external.py: a call outside our transaction; fn = its dry-run
    # True: fn only runs statements on the connection it is given (no network, no sleeping). It runs in
    # the caller's thread and timeout_s interrupts its connection (framework/deadline.py), instead of
    # costing a pool thread hop per call; an intent's writes whose tools are all local commit in one
    # transaction (ToolGateway.write_all). False (a tool that calls a service): a pool thread, timed out.
    local: bool = False

    def __post_init__(self) -> None:
        if self.local and self.external is not None:
            raise ValueError(f"tool {self.name!r}: an external call is not local")


class ToolRegistry:
    def __init__(self, tools: list[Tool] | None = None, *, local: bool = False) -> None:
        """`local=True`: every tool given is local (Tool.local), a registry of statements on our database."""
        self._tools: dict[str, Tool] = {}
        # provenance_problems by pack digest; registering a tool forgets them.
        self.provenance_checked: dict[str, list[str]] = {}
        for t in tools or []:
            self.register(replace(t, local=True) if local else t)

    def register(self, tool: Tool) -> Tool:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._tools[tool.name] = tool
        self.provenance_checked.clear()
        return tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolBlocked(f"unknown tool {name!r}") from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def provenance_problems(self, policy: PolicyPack) -> list[str]:
        """The pack's provenance rules against these tools: a rule guards a write tool's real parameter,
        and its sources are reads whose output is trusted. Checked once per pack digest (a gateway is
        opened per intent and step)."""
        if policy.digest not in self.provenance_checked:
            self.provenance_checked[policy.digest] = self._check_provenance(policy)
        return self.provenance_checked[policy.digest]

    def _check_provenance(self, policy: PolicyPack) -> list[str]:
        out: list[str] = []
        for tool, rules in policy.provenance.items():
            if tool not in self._tools or self._tools[tool].kind != ToolKind.WRITE:
                out.append(f"provenance: {tool!r} is not a registered write tool")
                continue
            for path, rule in rules.items():
                problem = prov.path_problem(self._tools[tool].params, path)
                out += [f"provenance {tool}: {problem}"] if problem else []
                for s in rule.sources:
                    if s.startswith(prov.DECLARED):
                        continue
                    src = self._tools.get(s)
                    if src is None or src.kind != ToolKind.READ or src.untrusted_output:
                        out.append(f"provenance {tool}.{path}: source {s!r} is not a read tool with trusted output")
        return out
