"""Typed tools of incident triage. The workflow reaches the catalog, the incidents and the diagnostics
files only through the gateway; the one write tool runs inside the ledger's transaction.

Every tool but one only reads: the service catalog, the service's open incidents, one incident, and
the service's metrics and log files in the diagnostics folder (read-only, size-capped, paths built from
a validated service name, never from alert text). The one write tool, `create_incident`, files a
ticket for humans. There is deliberately NO remediation tool: nothing restarts, scales, rolls back,
silences or runs anything, so whatever an alert or a log line asks for, the most this workflow can do
is open one incident that people then act on."""

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Connection, bindparam, select

from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.tools import Impact, PermanentToolError, Tool, ToolKind, ToolRegistry
from agent_pipelines.framework.ledger import PreconditionFailed, WriteOutcome
from agent_pipelines.workflows.incident_triage.models import (
    SERVICE_PATTERN,
    SEVERITIES,
    IncidentSnapshot,
    LogExcerpt,
    Metrics,
    MetricsRead,
    ServiceEntry,
)
from resources.incidents import incidents, service_catalog

ServiceId = Annotated[str, Field(pattern=rf"^{SERVICE_PATTERN}$")]
IncidentId = Annotated[str, Field(pattern=r"^INC-[0-9A-F]{10}$")]

# Where the diagnostics folder is, for the process that runs the tools (resources.build_resources
# exports Settings.diagnostics_dir here: a tool gets a database connection, not the settings).
DIAGNOSTICS_ENV = "AGENT_PIPELINES_RUN_DIAGNOSTICS_DIR"
METRICS_FILE, LOG_FILE = "metrics.json", "app.log"
MAX_METRICS_BYTES = 64 * 1024
MAX_LOG_BYTES = 256 * 1024  # the log's tail that is read: a runaway log never fills memory
MAX_LOG_LINES = 200
MAX_LINE_CHARS = 500


# Each statement is built once, here, and run with its values as parameters: building and hashing a new
# statement tree per call cost more than running it (framework/sql.py says why).
_SERVICE = select(service_catalog).where(service_catalog.c.service == bindparam("p_service"))
_OPEN_INCIDENTS = (select(incidents).where(incidents.c.service == bindparam("p_service"), incidents.c.status == "open")
                   .order_by(incidents.c.created_at, incidents.c.incident_id))
_INCIDENT = select(incidents).where(incidents.c.incident_id == bindparam("p_id"))
_OPEN_FOR_FINGERPRINT = (select(incidents.c.incident_id, incidents.c.created_by_intent)
                         .where(incidents.c.fingerprint == bindparam("p_fingerprint"), incidents.c.status == "open"))
_NEW_INCIDENT = incidents.insert()


def diagnostics_root() -> Path:
    exported = os.environ.get(DIAGNOSTICS_ENV)
    if exported:
        return Path(exported)
    from agent_pipelines.settings import (
        Settings,  # a process that built no resources: the environment's
    )

    return Settings.from_env().diagnostics_folder


def _service_file(service: str, name: str) -> Path:
    """<root>/<service>/<name>; the service name is a validated slug, and the resolved path must stay
    inside the root (a symlink pointing out of it is refused)."""
    root = diagnostics_root().resolve()
    path = (root / service / name).resolve()
    if root not in path.parents:
        raise PermanentToolError(f"diagnostics for {service!r} resolve outside the diagnostics folder")
    return path


def incident_id_for(intent_id: str) -> str:
    """One incident id per creating intent: a retry or re-run computes the same id."""
    return "INC-" + hashlib.sha256(intent_id.encode()).hexdigest()[:10].upper()


def _incident(row: object) -> IncidentSnapshot:
    data = {k: row[k] for k in IncidentSnapshot.model_fields}  # type: ignore[index]
    return IncidentSnapshot.model_validate(data | {"flags": data["flags"] or {}})


# -- read tools: the catalog and incidents ------------------------------------------------------------------
class GetService(BaseModel):
    service: ServiceId


def get_service(conn: Connection, p: GetService) -> ServiceEntry | None:
    row = conn.execute(_SERVICE, {"p_service": p.service}).mappings().first()
    return None if row is None else ServiceEntry.model_validate(dict(row))


class ListOpenIncidents(BaseModel):
    service: ServiceId


def list_open_incidents(conn: Connection, p: ListOpenIncidents) -> list[IncidentSnapshot]:
    rows = conn.execute(_OPEN_INCIDENTS, {"p_service": p.service}).mappings()
    return [_incident(r) for r in rows]


class GetIncident(BaseModel):
    incident_id: IncidentId


def get_incident(conn: Connection, p: GetIncident) -> IncidentSnapshot | None:
    row = conn.execute(_INCIDENT, {"p_id": p.incident_id}).mappings().first()
    return None if row is None else _incident(row)


# -- read tools: the diagnostics files (read-only; the connection is not used) ---------------------------
class ReadMetrics(BaseModel):
    service: ServiceId


def read_metrics(conn: Connection, p: ReadMetrics) -> MetricsRead:
    path = _service_file(p.service, METRICS_FILE)
    if not path.is_file():
        return MetricsRead(service=p.service, found=False, problem=f"no {p.service}/{METRICS_FILE} in the diagnostics folder")
    if path.stat().st_size > MAX_METRICS_BYTES:
        return MetricsRead(service=p.service, found=False, unreadable=True,
                           problem=f"{p.service}/{METRICS_FILE} is over {MAX_METRICS_BYTES:,} bytes")
    try:
        return MetricsRead(service=p.service, found=True, metrics=Metrics.model_validate(json.loads(path.read_bytes())))
    except (ValueError, ValidationError) as exc:  # a half-written or malformed file is a finding, not a crash
        problem = str(exc).splitlines()[0][:200]
        return MetricsRead(service=p.service, found=False, unreadable=True,
                           problem=f"{p.service}/{METRICS_FILE} is unreadable: {problem}")


class ReadLogs(BaseModel):
    service: ServiceId
    max_lines: int = Field(MAX_LOG_LINES, ge=1, le=MAX_LOG_LINES)


def read_logs(conn: Connection, p: ReadLogs) -> LogExcerpt:
    """The last lines of the service's log (at most the last 256 KB), each cut to 500 characters."""
    path = _service_file(p.service, LOG_FILE)
    if not path.is_file():
        return LogExcerpt(service=p.service, found=False)
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(max(0, size - MAX_LOG_BYTES))
        raw = f.read(MAX_LOG_BYTES)
    lines = raw.decode("utf-8", errors="replace").splitlines()
    if size > MAX_LOG_BYTES:
        lines = lines[1:]  # the first line read is likely cut in the middle
    lines = [ln[:MAX_LINE_CHARS] for ln in lines if ln.strip()]
    tail = lines[-p.max_lines:]
    return LogExcerpt(service=p.service, found=True, lines=tuple(tail),
                      error_lines=sum(" ERROR " in f" {ln} " for ln in tail),
                      warn_lines=sum(" WARN " in f" {ln} " for ln in tail),
                      truncated=size > MAX_LOG_BYTES or len(lines) > len(tail))


# -- the one write tool: a ticket for humans ----------------------------------------------------------------
class CreateIncident(BaseModel):
    intent_id: str = Field(min_length=1, max_length=200)
    alert_id: str = Field(min_length=1, max_length=64)
    service: ServiceId
    fingerprint: str = Field(min_length=1, max_length=128)
    severity: str
    team: str = Field(min_length=1, max_length=64)
    summary: str = Field(min_length=1, max_length=500)
    flags: dict[str, list[str]] = {}
    evidence: dict[str, float | int | str] = {}


def create_incident(conn: Connection, p: CreateIncident) -> WriteOutcome:
    """One open incident for the alert's fingerprint, assigned to the team; nothing else changes."""
    if p.severity not in SEVERITIES:
        raise PermanentToolError(f"unknown severity {p.severity!r}")
    # The partial unique index enforces this too; checked first for a reason a person can read.
    open_row = conn.execute(_OPEN_FOR_FINGERPRINT, {"p_fingerprint": p.fingerprint}).first()
    if open_row is not None:
        raise PreconditionFailed(f"{open_row.incident_id} is already open for fingerprint {p.fingerprint!r} "
                                 f"(intent {open_row.created_by_intent})")
    incident_id, now = incident_id_for(p.intent_id), utcnow()
    row = {"incident_id": incident_id, "service": p.service, "fingerprint": p.fingerprint, "severity": p.severity,
               "team": p.team, "summary": p.summary, "status": "open", "alert_id": p.alert_id, "flags": p.flags,
               "evidence": p.evidence, "created_by_intent": p.intent_id, "created_at": now, "updated_at": now}
    conn.execute(_NEW_INCIDENT, row)
    after = {k: v for k, v in row.items() if k not in ("created_at", "updated_at", "evidence")}
    return WriteOutcome(table="incidents", key=incident_id, before=None, after=after)


def registry() -> ToolRegistry:
    R, W, LOW = ToolKind.READ, ToolKind.WRITE, Impact.LOW
    return ToolRegistry([
        Tool("get_service", GetService, R, LOW, get_service),
        Tool("list_open_incidents", ListOpenIncidents, R, LOW, list_open_incidents),
        Tool("get_incident", GetIncident, R, LOW, get_incident),
        Tool("read_metrics", ReadMetrics, R, LOW, read_metrics),
        # Log lines are whatever the service printed: never a trusted source for a write's values.
        Tool("read_logs", ReadLogs, R, LOW, read_logs, untrusted_output=True),
        Tool("create_incident", CreateIncident, W, LOW, create_incident),
    ])
