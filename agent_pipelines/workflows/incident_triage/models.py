"""Typed state of incident triage: the alert as the webhook wrote it (intake), what the service
catalog, the open incidents and the diagnostics files say (context), and the triage the model
proposes (proposal).

The proposal can only say how bad it is (sev1..sev4), which team owns it and what happened. There is
no field for an action on the running system, and no tool that could carry one out."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_pipelines.framework.workflow import StepModel

WORKFLOW = "incident_triage"

SERVICE_PATTERN = r"[a-z][a-z0-9-]{1,62}"
Severity = Literal["sev1", "sev2", "sev3", "sev4"]
SEVERITIES: tuple[str, ...] = Severity.__args__  # type: ignore[attr-defined]


def rank(severity: str) -> int:
    """sev1 -> 1 (worst) ... sev4 -> 4."""
    return SEVERITIES.index(severity) + 1


# -- intake: one row of alerts, as the sensor read it ----------------------------------------------------
class AlertIntake(StepModel):
    seq: int
    alert_id: str = Field(min_length=1, max_length=64)
    version: int = 1
    source: str = Field("", max_length=64)
    service: str = Field("", max_length=64)  # may be empty: VALIDATE asks which service
    fingerprint: str = Field("", max_length=128)
    title: str = Field("", max_length=20_000)
    severity_label: str | None = Field(None, max_length=16)  # the alerting rule's label
    routing_team: str | None = Field(None, max_length=64)  # the alerting rule's route
    fired_at: datetime | None = None

    @property
    def service_id(self) -> str:
        return self.service.strip().lower()

    @property
    def dedupe_key(self) -> str:
        """The alert's fingerprint; an alert sent without one is identified by service and title."""
        return self.fingerprint.strip() or f"{self.service_id}:{' '.join(self.title.lower().split())}"[:128]


# -- context: read through read-only tools ---------------------------------------------------------------
class ServiceEntry(StepModel):
    service: str
    display_name: str
    owner_team: str
    escalation_team: str | None = None
    tier: int
    status: str  # active | retired


class IncidentSnapshot(StepModel):
    incident_id: str
    service: str
    fingerprint: str
    severity: str
    team: str
    summary: str
    status: str
    alert_id: str
    flags: dict[str, list[str]] = Field(default_factory=dict)
    created_by_intent: str


class Metrics(StepModel):
    """The service's metrics file (written by the metrics collector): figures over a recent window."""

    window_minutes: int = Field(ge=1, le=1440)
    requests_per_min: float = Field(ge=0)
    error_rate: float = Field(ge=0, le=1)  # failed / all requests
    p99_latency_ms: float = Field(ge=0)
    availability: float = Field(ge=0, le=1)  # successful health probes / all probes


class MetricsRead(StepModel):
    """What read_metrics found: the figures, or why there are none (missing, unreadable)."""

    service: str
    found: bool
    metrics: Metrics | None = None
    problem: str | None = None
    unreadable: bool = False  # a file is there but is not a metrics document (half-written, too big)


class LogExcerpt(StepModel):
    """The tail of the service's log file. Its lines are untrusted text: whatever the service (or
    whoever reached it) printed, including text addressed to an agent."""

    service: str
    found: bool
    lines: tuple[str, ...] = ()
    error_lines: int = 0
    warn_lines: int = 0
    truncated: bool = False


class TriageContext(StepModel):
    service: ServiceEntry | None  # None: not in the catalog (or the alert names none)
    open_incidents: tuple[IncidentSnapshot, ...]  # the service's open incidents
    metrics: MetricsRead | None  # None: not read (no known service)
    logs: LogExcerpt | None

    def open_for(self, fingerprint: str) -> IncidentSnapshot | None:
        return next((i for i in self.open_incidents if i.fingerprint == fingerprint), None)


# -- the severity the metrics support (policy facts compare the proposal with it) -----------------------
# (severity, error_rate at or above, p99 ms at or above, availability below); the first row that matches.
SEVERITY_EVIDENCE: tuple[tuple[str, float, float, float], ...] = (
    ("sev1", 0.20, float("inf"), 0.95),   # an outage: a fifth of requests fail or probes fail
    ("sev2", 0.05, 3000.0, 0.99),         # a major degradation
    ("sev3", 0.01, 1000.0, 0.995),        # a minor degradation
)


def evidence_severity(m: Metrics) -> str:
    for severity, error_rate, p99_ms, availability in SEVERITY_EVIDENCE:
        if m.error_rate >= error_rate or m.p99_latency_ms >= p99_ms or m.availability < availability:
            return severity
    return "sev4"


# -- proposal: what the model returns (instructor response_model); it decides nothing -------------------
class TriageProposal(BaseModel):
    """The triage of one alert: how bad, whose, and what the responders should know."""

    model_config = ConfigDict(extra="forbid")
    severity: Severity = Field(description="sev1 (outage, pages humans) .. sev4 (no user impact)")
    team: str = Field(min_length=1, max_length=64, description="the team that owns the alerting service")
    summary: str = Field(min_length=1, max_length=500,
                         description="one line for the responders: what is failing and the figures that show it")
    rationale: str = Field("", max_length=2000, description="why this severity and team, from the records given")
