"""incident_triage__on_new_alert: one intent and one run per new row in alerts (a record sensor,
`framework.triggers.build_record_sensor`). The alerting webhook writes the rows. This module holds what
is specific to alerts: how a row becomes an intake, and its identity and correlation."""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg

from agent_pipelines.framework.intents import (
    Intent,
    IntentStore,
    digest,
    record_intent_id,
)
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.triggers import build_record_sensor, shown_id
from agent_pipelines.framework.workflow import Workflow
from agent_pipelines.workflows.incident_triage.models import AlertIntake
from resources.incidents import alerts


def alert_intake(row: Mapping[str, Any]) -> AlertIntake:
    """One alerts row as the workflow's intake (raises on a row it cannot represent)."""
    return AlertIntake(seq=row["seq"], alert_id=row["alert_id"], version=row["version"], source=row["source"] or "",
                       service=row["service"] or "", fingerprint=row["fingerprint"] or "", title=row["title"] or "",
                       severity_label=row["severity_label"], routing_team=row["routing_team"],
                       fired_at=row["fired_at"])


def register_alert(store: IntentStore, wf: Workflow, intake: AlertIntake) -> tuple[Intent, bool]:
    """Register one alert as an intent: (alert id, version) is its identity. An alert with no service, no
    fingerprint and no title has nothing to act on: recorded, not launched."""
    data = json.loads(intake.model_dump_json())
    # Alerts of the same problem share a correlation id: their fingerprint.
    common = {"intent_id": record_intent_id(wf.name, intake.alert_id, intake.version), "workflow": wf.name,
                  "correlation_id": (intake.dedupe_key or intake.alert_id)[:200],
                  "source_ref": f"alerts:{intake.alert_id}@{intake.version}",
                  "source_digest": digest(json.dumps(data, sort_keys=True)), "intake": data}
    if not (intake.service.strip() or intake.fingerprint.strip() or intake.title.strip()):
        return store.register(**common, state=IntentState.REJECTED_INPUT,
                              reason=f"alert {shown_id(intake.alert_id)} has no service, no fingerprint and no "
                                     f"title: nothing to act on")
    return store.register(**common)


def build_alert_sensor(wf: Workflow, job: dg.JobDefinition, batch: dg.JobDefinition | None = None) -> dg.SensorDefinition:
    return build_record_sensor(
        wf, [job, *([batch] if batch else [])], name=f"{wf.name}__on_new_alert", noun="alert", table=alerts,
        id_column="alert_id", to_intake=alert_intake, register=register_alert,
        description="Register each new alert (written by the alerting webhook) as an intent; empty or "
                    "unreadable ones are recorded, not launched.")
