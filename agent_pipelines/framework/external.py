"""External write tools: the write is another service's HTTP API, so it cannot share our transaction.

The ledger row comes first and is committed on its own (`pending`, with the idempotency key derived
as for every write); then the call (httpx with timeouts; 429, 5xx, timeouts and lost connections
retried by tenacity, honouring Retry-After, always with the same key); then the answer is recorded on
the row (`committed`, with the HTTP status and body as evidence). A crash, a timeout or a lost answer
leaves the row pending. Whoever reaches the write next (the recovery run's commit, or this call's own
next attempt) first reads the external system back, by idempotency key where the API keeps it, else by
a business key the tool declares: found means it took effect (`reconciled`, with what was read), not
found means it did not, and only then is the call made again. An API that ignores idempotency keys
therefore still gets one effect: its retries are always preceded by a read-back.

A tool declares all of this in an `ExternalWrite` and becomes a gateway Tool with `external_tool`, so
policy, approvals, the kill switch, modes, budgets, redaction and the trace apply unchanged. Its `fn`
is the dry-run that read_only and shadow modes run instead of the call (or a refusal if it has none)."""

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Literal

import httpx
from pydantic import BaseModel
from sqlalchemy import Connection, delete, select, update
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.tools import Impact, PermanentToolError, RetryableToolError, Tool, ToolBlocked, ToolKind
from agent_pipelines.framework.ledger import (
    PreconditionFailed,
    WriteOutcome,
    WriteReceipt,
    WriteStatus,
    idempotency_key,
)
from agent_pipelines.framework.redaction import redact
from agent_pipelines.framework.sql import insert_ignore
from agent_pipelines.framework.tables import writes

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_EVIDENCE_BODY = 4000  # characters of a non-JSON answer kept as evidence


class HttpCall(BaseModel, frozen=True):
    """One request, relative to the service's base URL."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    json_body: dict[str, Any] | None = None
    params: dict[str, str] = {}
    headers: dict[str, str] = {}


class ReadBy(StrEnum):
    IDEMPOTENCY_KEY = "idempotency_key"  # the API finds a request by the key we sent
    BUSINESS_KEY = "business_key"        # we find our effect among the records by a key the tool declares


@dataclass(frozen=True)
class ReadBack:
    """How to see whether a write took effect. `request(params, key)` is a GET; `match(params, key,
    answer)` returns our effect from its JSON answer, or None when it is not there. A match that finds
    the record changed by someone else raises PreconditionFailed."""

    by: ReadBy
    request: Callable[[Any, str], HttpCall]
    match: Callable[[Any, str, Any], dict[str, Any] | None]


class ExternalOutcomeUnknown(RetryableToolError):
    """Every attempt failed transiently; the call may have taken effect. The row stays pending and the
    next attempt at this write (the intent's recovery) reads the external system back first."""


class DryRunRefused(ToolBlocked):
    """read_only / shadow: the tool declares no dry-run, so it does nothing at all."""


class _Transient(Exception):
    """A failure worth another attempt. `maybe_applied`: the request may have reached the service
    (timeouts, a connection lost mid-request, 5xx), unlike a 429 or a refused connection."""

    def __init__(self, what: str, *, maybe_applied: bool, retry_after_s: float | None = None) -> None:
        super().__init__(what)
        self.maybe_applied, self.retry_after_s = maybe_applied, retry_after_s


def service_url_var(service: str) -> str:
    return f"AGENT_PIPELINES_{service.upper()}_URL"


def service_url(service: str) -> str:
    """The base URL of an external service, from AGENT_PIPELINES_<SERVICE>_URL: the one place an
    external tool (write or read) learns where its system of record is."""
    var = service_url_var(service)
    url = os.environ.get(var)
    if not url:
        raise PermanentToolError(f"{var} is not set: no address for the {service} service (run "
                                 f"`agent-pipelines services` and export the URLs it prints)")
    return url.rstrip("/")


@dataclass(frozen=True)
class ExternalWrite:
    """What an external write tool declares: the service (its base URL comes from the environment,
    AGENT_PIPELINES_<SERVICE>_URL), the call, where the idempotency key goes (the Idempotency-Key
    header, or the name of the API's own body field), whether the API honours it, how to read the
    effect back, and what the ledger row records from the answer."""

    service: str
    call: Callable[[Any], HttpCall]
    read_back: ReadBack
    outcome: Callable[[Any, dict[str, Any]], WriteOutcome]
    honours_key: bool
    key_in: str = "header"
    dry_run: Callable[[Connection, Any], WriteOutcome] | None = None
    timeout_s: float = 10.0
    attempts: int = 5
    max_wait_s: float = 30.0  # Retry-After above this is capped: a longer outage is the sweeper's
    # An API that ignores the key: after an attempt that may have reached it, wait at least this long
    # before reading back, so a request still in flight there (slow, queued) lands before we look. Set it
    # to the service's own request timeout; a recovery run comes a lease later anyway.
    settle_s: float = 0.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def base_url(self) -> str:
        return service_url(self.service)

    def budget_s(self) -> float:
        """The longest a write may take (every attempt, its read-back and its wait): the gateway's timeout."""
        return self.attempts * (2 * self.timeout_s + max(self.max_wait_s, self.settle_s)) + self.timeout_s

    def request(self, params: Any, key: str) -> HttpCall:
        call = self.call(params)
        if self.key_in == "header":
            return call.model_copy(update={"headers": {**call.headers, IDEMPOTENCY_HEADER: key}})
        return call.model_copy(update={"json_body": {**(call.json_body or {}), self.key_in: key}})

    def apply(self, db: Database, *, workflow: str, intent_id: str, action: str, tool: str, run_id: str | None,
              params: Any, approval_id: str | None, note: Callable[[str, dict[str, Any]], None]) -> WriteReceipt:
        """The write, once: see the module docstring."""
        key = idempotency_key(workflow, intent_id, action)
        row = db.transaction(lambda conn: _claim(conn, key, {
            "intent_id": intent_id, "workflow": workflow, "action": action, "tool": tool, "run_id": run_id,
            "approval_id": approval_id}))
        done = _Receipts(key, action, tool)
        with httpx.Client(base_url=self.base_url(), timeout=httpx.Timeout(self.timeout_s,
                                                                          connect=min(2.0, self.timeout_s))) as client:
            if row is not None and row["status"] != WriteStatus.PENDING:  # a retry or a re-execution
                return done.existing(row)
            looked: dict[str, Any] = {}
            if row is not None:  # an earlier attempt died, timed out or lost its answer: look first
                try:
                    effect = self._read(client, params, key)
                except _Transient as exc:
                    raise ExternalOutcomeUnknown(f"{tool}: reading {self.service} back failed: {exc}") from exc
                note("external_read_back", {"tool": tool, "action": action, "by": self.read_back.by,
                                            "found": effect is not None})
                if effect is not None:
                    return done.record(db, self.outcome(params, effect), WriteStatus.RECONCILED,
                                       _evidence(self.read_back.by, "recovery", effect))
                looked = {"read_back": {"by": str(self.read_back.by), "when": "recovery", "decision": "not_committed",
                                        "left_pending_by_run": row["run_id"]}}
            status, effect, evidence = self._call(client, params, key, note, tool, action)
            evidence.update(looked)
        if status is None:  # refused (4xx): no effect, so no row stays, like a rolled-back write ...
            code = evidence["http_status"]
            if evidence.get("maybe_applied"):  # ... unless an earlier attempt may have landed: a read-back decides
                raise ExternalOutcomeUnknown(f"{tool}: {self.service} answered HTTP {code} after an attempt that "
                                             f"may have taken effect; the write stays pending")
            db.transaction(lambda conn: conn.execute(delete(writes).where(
                writes.c.idempotency_key == key, writes.c.status == WriteStatus.PENDING)))
            exc = PreconditionFailed if code in (409, 412) else PermanentToolError
            raise exc(f"{tool}: {self.service} refused the write with HTTP {code}: {evidence.get('answer')}")
        return done.record(db, self.outcome(params, effect), status, evidence)

    def _read(self, client: httpx.Client, params: Any, key: str) -> dict[str, Any] | None:
        answer = _send(client, self.read_back.request(params, key))
        if answer.status_code == 404:
            return None
        if answer.status_code >= 400:
            raise PermanentToolError(f"reading {self.service} back: HTTP {answer.status_code}: {_body(answer)}")
        return self.read_back.match(params, key, answer.json())

    def _call(self, client: httpx.Client, params: Any, key: str, note: Callable[[str, dict[str, Any]], None],
              tool: str, action: str) -> tuple[WriteStatus | None, dict[str, Any], dict[str, Any]]:
        """(status, effect, evidence): COMMITTED with the answer, RECONCILED when a read-back between
        attempts found the effect, None when the service refused it (4xx). Raises ExternalOutcomeUnknown."""
        req = self.request(params, key)
        maybe_applied = False
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=self._wait, sleep=self.sleep,
                            retry=retry_if_exception_type(_Transient), reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    n = attempt.retry_state.attempt_number
                    # The same key goes again; an API that ignores it is read back first instead.
                    if maybe_applied and not self.honours_key:
                        effect = self._read(client, params, key)
                        note("external_read_back", {"tool": tool, "action": action, "by": self.read_back.by,
                                                    "found": effect is not None, "attempt": n})
                        if effect is not None:
                            return WriteStatus.RECONCILED, effect, _evidence(self.read_back.by, "retry", effect, n)
                    try:
                        answer = _send(client, req)
                    except _Transient as exc:
                        maybe_applied = maybe_applied or exc.maybe_applied
                        raise
        except _Transient as exc:
            raise ExternalOutcomeUnknown(f"{tool}: {self.attempts} attempt(s) failed, last: {exc}; the write "
                                         f"stays pending until a read-back of {self.service} decides it") from exc
        evidence = {"via": "call", "http_status": answer.status_code, "attempts": n, "answer": _body(answer),
                    **({"maybe_applied": True} if maybe_applied else {}),
                    **({"replayed": True} if answer.headers.get("idempotent-replayed") == "true" else {})}
        if answer.status_code >= 400:
            return None, {}, evidence
        return WriteStatus.COMMITTED, answer.json(), evidence

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after_s is not None:
            wait = min(exc.retry_after_s, self.max_wait_s)
        else:
            wait = float(wait_exponential_jitter(initial=0.1, max=min(5.0, self.max_wait_s))(state))
        if isinstance(exc, _Transient) and exc.maybe_applied and not self.honours_key:
            wait = max(wait, self.settle_s)
        return wait


def external_tool(name: str, params: type[BaseModel], spec: ExternalWrite, *, impact: Impact = Impact.HIGH,
                  description: str = "") -> Tool:
    """A gateway write tool backed by `spec`. The gateway does not retry it (the spec does, with read-backs
    in between) and waits for the spec's whole budget; read_only and shadow run `spec.dry_run`."""

    def dry_run(conn: Connection, p: BaseModel) -> WriteOutcome:
        if spec.dry_run is None:
            raise DryRunRefused(f"{name}: an external write with no dry-run is refused in read_only and shadow modes")
        return spec.dry_run(conn, p)

    return Tool(name, params, ToolKind.WRITE, impact, dry_run, timeout_s=spec.budget_s(), retry_on=(),
                description=description, external=spec)


def _claim(conn: Connection, key: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """Insert the pending row (None), or return the row an earlier attempt left."""
    if insert_ignore(conn, writes, {"idempotency_key": key, "target": "", "status": WriteStatus.PENDING,
                                    "at": utcnow(), "evidence": {"via": "pending"}, **row}, ["idempotency_key"]):
        return None
    return dict(conn.execute(select(writes).where(writes.c.idempotency_key == key)).mappings().one())


@dataclass(frozen=True)
class _Receipts:
    key: str
    action: str
    tool: str

    def existing(self, row: dict[str, Any]) -> WriteReceipt:
        table, _, rkey = row["target"].partition(":")
        return WriteReceipt(idempotency_key=self.key, action=self.action, tool=self.tool, table=table, key=rkey,
                            status=WriteStatus.ALREADY_COMMITTED, before=row["before"], after=row["after"])

    def record(self, db: Database, outcome: WriteOutcome, status: WriteStatus, evidence: dict[str, Any]) -> WriteReceipt:
        """The outcome on the pending row, committed. Only a pending row changes: the row is decided once."""
        db.transaction(lambda conn: conn.execute(update(writes).where(
            writes.c.idempotency_key == self.key, writes.c.status == WriteStatus.PENDING).values(
            target=f"{outcome.table}:{outcome.key}", status=status, before=redact(outcome.before),
            after=redact(outcome.after), evidence=redact(evidence), at=utcnow())))
        return WriteReceipt(idempotency_key=self.key, action=self.action, tool=self.tool, table=outcome.table,
                            key=outcome.key, status=status, before=outcome.before, after=outcome.after)


def _send(client: httpx.Client, req: HttpCall) -> httpx.Response:
    try:
        answer = client.request(req.method, req.path, json=req.json_body, params=req.params or None,
                                headers=req.headers)
    except httpx.ConnectError as exc:  # nothing reached the service
        raise _Transient(f"connect: {exc}", maybe_applied=False) from exc
    except (httpx.TimeoutException, httpx.TransportError) as exc:  # it may have been applied
        raise _Transient(f"{type(exc).__name__}: {exc}", maybe_applied=not isinstance(exc, httpx.ConnectTimeout)) \
            from exc
    if answer.status_code == 429 or answer.status_code >= 500:
        raise _Transient(f"HTTP {answer.status_code}", maybe_applied=answer.status_code != 429,
                         retry_after_s=_retry_after(answer.headers.get("retry-after")))
    return answer


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date (RFC 9110); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def _body(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return answer.text[:MAX_EVIDENCE_BODY]


def _evidence(by: ReadBy, when: str, effect: dict[str, Any], attempt: int | None = None) -> dict[str, Any]:
    return {"via": "read_back", "by": str(by), "when": when, "decision": "committed", "found": effect,
            **({"attempt": attempt} if attempt is not None else {})}


def read_json(service: str, path: str, params: dict[str, str] | None = None, *, timeout_s: float = 10.0) -> Any:
    """A read-only GET on an external service, for a workflow's read and verify tools: the JSON answer,
    None for a 404. A timeout, a lost connection, a 429 or a 5xx is a RetryableToolError (the gateway
    retries reads); another 4xx is a PermanentToolError naming the answer."""
    try:
        with httpx.Client(base_url=service_url(service), timeout=httpx.Timeout(timeout_s, connect=min(2.0, timeout_s))) as client:
            answer = _send(client, HttpCall(method="GET", path=path, params=params or {}))
    except _Transient as exc:
        raise RetryableToolError(f"reading {service} {path}: {exc}") from exc
    if answer.status_code == 404:
        return None
    if answer.status_code >= 400:
        raise PermanentToolError(f"reading {service} {path}: HTTP {answer.status_code}: {_body(answer)}")
    return answer.json()


def seed_service(service: str, path: str, records: list[dict[str, Any]]) -> Any:
    """POST `records` to an admin endpoint of a configured service (a local stand-in's seed, e.g. the
    payments API's /_admin/orders): the demo and the gold cases load their external records this way."""
    with httpx.Client(base_url=service_url(service), timeout=10.0) as client:
        answer = client.post(path, json=records)
        answer.raise_for_status()
        return answer.json()
