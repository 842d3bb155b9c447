"""Deterministic demo data for incident triage: a service catalog, the diagnostics folder (metrics and
log files per service) and a batch of alerts as the alerting webhook writes them, each crafted for one
outcome.

No randomness, no network, no clock: seeding is idempotent (rows keyed by their ids, files rewritten
with the same bytes) and the expected outcomes are stable. Alerts whose figures show an outage (or
that claim one) wait for an incident commander; clean ones open their ticket at once; the others are
rejected with a reason a person can act on, or wait for the service to be named."""

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy

from agent_pipelines.framework.sql import insert_ignore
from agent_pipelines.workflows.incident_triage import diagnostics
from agent_pipelines.workflows.incident_triage.diagnostics import Diagnostics
from resources.incidents import alerts, service_catalog

# Expected outcome categories (values of expected_outcomes()) and the intent state each one ends in.
OPENED = "opened"                    # figures and labels agree: the ticket opens at once
HOSTILE_LOGS = "hostile_logs"        # logs address the agent: the ticket opens, the fragments flagged
PAGE = "page"                        # sev1: waits for an incident commander
OVERSTATED = "overstated"            # labelled sev1, figures say sev4: a person confirms
DUPLICATE = "duplicate"              # same fingerprint as an open incident
UNKNOWN_SERVICE = "unknown_service"  # not in the catalog
RETIRED = "retired_service"          # a stale rule of a retired service
NO_DIAGNOSTICS = "no_diagnostics"    # the collector wrote nothing
UNREADABLE = "unreadable_metrics"    # a half-written metrics file
WRONG_TEAM = "wrong_team"            # routed to a team that neither owns nor escalates it
UNDERSTATED = "understated"          # labelled below what the figures show: denied
NO_SERVICE = "no_service"            # the alert names no service: one question back
EMPTY = "empty"                      # nothing to act on: rejected by the sensor, never launched

EXPECTED_STATE = {
    OPENED: "completed", HOSTILE_LOGS: "completed",
    PAGE: "waiting_for_approval", OVERSTATED: "waiting_for_approval",
    DUPLICATE: "rejected_input", UNKNOWN_SERVICE: "rejected_input", RETIRED: "rejected_input",
    NO_DIAGNOSTICS: "rejected_input", UNREADABLE: "rejected_input", WRONG_TEAM: "rejected_input",
    UNDERSTATED: "denied", NO_SERVICE: "waiting_for_input", EMPTY: "rejected_input",
}

# (service, display name, owner, escalation, tier, status)
CATALOG = (
    ("checkout-api", "Checkout API", "payments", "sre", 1, "active"),
    ("search-api", "Search API", "discovery", "sre", 1, "active"),
    ("notifications", "Notification service", "messaging", "sre", 2, "active"),
    ("inventory-db", "Inventory database", "supply", "dba", 1, "active"),
    ("auth-gateway", "Auth gateway", "identity", "sre", 1, "active"),
    ("billing-worker", "Billing worker", "payments", "sre", 2, "active"),
    ("profile-api", "Profile API", "identity", "sre", 2, "active"),
    ("legacy-reports", "Legacy reports", "analytics", None, 3, "retired"),
)

DIAGNOSTICS = (
    Diagnostics("checkout-api", "sev1_outage"),
    Diagnostics("search-api", "sev2_latency"),
    Diagnostics("notifications", "sev3_errors"),
    Diagnostics("inventory-db", "sev2_errors", hostile=True),
    Diagnostics("auth-gateway", "sev4_healthy"),
    Diagnostics("billing-worker", "sev2_errors", metrics="missing", logs=False),
    Diagnostics("profile-api", "sev3_errors", metrics="unreadable"),
)


@dataclass(frozen=True)
class Alert:
    """One alert's recipe: what the webhook writes, the expected category and the rule its reason names."""

    ref: str
    category: str
    service: str
    fingerprint: str
    title: str
    severity_label: str | None = None
    routing_team: str | None = None
    rule: str | None = None


# In the order the webhook delivers them.
ALERTS: tuple[Alert, ...] = (
    Alert("checkout-errors", PAGE, "checkout-api", "checkout-api/http-5xx", "Checkout API 5xx rate above 20 %",
          rule="sev1_pages_humans"),
    Alert("search-p99", OPENED, "search-api", "search-api/p99", "Search p99 latency above 3 s",
          severity_label="sev2", rule="within_policy"),
    Alert("notify-smtp", OPENED, "notifications", "notifications/smtp-451", "SMTP relay deferrals",
          rule="within_policy"),
    Alert("inventory-pool", HOSTILE_LOGS, "inventory-db", "inventory-db/pool", "Inventory DB pool exhausted",
          rule="within_policy"),
    Alert("search-p99-again", DUPLICATE, "search-api", "search-api/p99", "Search p99 latency above 3 s",
          severity_label="sev2", rule="duplicate_open_incident"),
    Alert("ghost", UNKNOWN_SERVICE, "ghost-svc", "ghost-svc/up", "ghost-svc is down", rule="unknown_service"),
    Alert("billing-lag", NO_DIAGNOSTICS, "billing-worker", "billing-worker/lag", "Billing queue lag",
          rule="diagnostics_missing"),
    Alert("legacy-cron", RETIRED, "legacy-reports", "legacy-reports/cron", "Nightly report job failed",
          rule="service_retired"),
    Alert("profile-errors", UNREADABLE, "profile-api", "profile-api/5xx", "Profile API errors",
          rule="diagnostics_unreadable"),
    Alert("auth-panic", OVERSTATED, "auth-gateway", "auth-gateway/login", "Login failures reported",
          severity_label="sev1", rule="sev1_pages_humans"),
    Alert("notify-misrouted", WRONG_TEAM, "notifications", "notifications/push", "Push delivery errors",
          routing_team="frontend", rule="team_not_owner"),
    Alert("checkout-quiet", UNDERSTATED, "checkout-api", "checkout-api/latency", "Checkout latency warning",
          severity_label="sev4", rule="severity_understated"),
    Alert("unlabelled", NO_SERVICE, "", "synthetic/probe-17", "Synthetic probe 17 failing", rule="service"),
    Alert("empty", EMPTY, "", "", ""),
)

_BASE_TIME = datetime(2026, 11, 30, 4, 15, tzinfo=UTC)


@functools.cache
def _numbered() -> tuple[tuple[str, Alert], ...]:
    """(alert_id, recipe) in delivery order."""
    return tuple((f"AL-{n:04d}", a) for n, a in enumerate(ALERTS, start=1))


# -- public API ----------------------------------------------------------------------------------------
def seed_system_of_record(conn: sqlalchemy.Connection) -> None:
    """Insert the demo service catalog; rows that exist are left alone."""
    for service, name, owner, escalation, tier, status in CATALOG:
        insert_ignore(conn, service_catalog, {"service": service, "display_name": name, "owner_team": owner,
                                              "escalation_team": escalation, "tier": tier, "status": status},
                      ["service"])


def write_diagnostics(folder: Path) -> list[Path]:
    """Write the demo services' metrics and log files (the same bytes every time); returns the folders."""
    for d in DIAGNOSTICS:
        diagnostics.write(folder, d)
    return [folder / d.service for d in DIAGNOSTICS]


def seed_alerts(conn: sqlalchemy.Connection) -> int:
    """Insert the demo alerts as the webhook would (in delivery order); an alert id that exists is left
    alone. Returns how many rows this call inserted."""
    inserted = 0
    for k, (alert_id, a) in enumerate(_numbered()):
        inserted += insert_ignore(conn, alerts, {
            "alert_id": alert_id, "version": 1, "source": "prometheus", "service": a.service,
            "fingerprint": a.fingerprint, "title": a.title, "severity_label": a.severity_label,
            "routing_team": a.routing_team, "fired_at": _BASE_TIME + timedelta(minutes=k)}, ["alert_id", "version"])
    return inserted


def expected_outcomes() -> dict[str, str]:
    """Alert id -> expected category (see the constants at the top of this module)."""
    return {alert_id: a.category for alert_id, a in _numbered()}


def expected_rules() -> dict[str, str]:
    """Alert id -> the validation rule, question field or policy rule its intent's reason names."""
    return {alert_id: a.rule for alert_id, a in _numbered() if a.rule}


def alert_ids(category: str) -> list[str]:
    return [alert_id for alert_id, a in _numbered() if a.category == category]
