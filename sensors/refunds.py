"""refund__on_new_request: one intent and one run per new row in refund_requests (a record sensor,
`framework.triggers.build_record_sensor`). This module holds what is specific to refund requests: how a
row becomes an intake, and its identity and correlation."""

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
from agent_pipelines.workflows.refund.models import RefundRequestIntake
from resources.refunds import refund_requests


def request_intake(row: Mapping[str, Any]) -> RefundRequestIntake:
    """One refund_requests row as the workflow's intake (raises on a row it cannot represent)."""
    return RefundRequestIntake(seq=row["seq"], request_id=row["request_id"], version=row["version"],
                               order_id=row["order_id"], customer_email=row["customer_email"] or "",
                               amount_cents=row["amount_cents"], reason=row["reason"], text=row["text"] or "",
                               submitted_at=row["submitted_at"])


def register_request(store: IntentStore, wf: Workflow, intake: RefundRequestIntake) -> tuple[Intent, bool]:
    """(request id, version) is the intent's identity; requests about one order share a correlation id.
    A request with neither text nor an order nor a reason has nothing to act on: recorded, not launched."""
    data = json.loads(intake.model_dump_json())
    correlation = intake.evidence_order_id or intake.request_id
    common: dict[str, Any] = {
        "intent_id": record_intent_id(wf.name, intake.request_id, intake.version), "workflow": wf.name,
        "correlation_id": correlation[:200], "source_ref": f"refund_requests:{intake.request_id}@{intake.version}",
        "source_digest": digest(json.dumps(data, sort_keys=True)), "intake": data}
    if not intake.text.strip() and not (intake.order_id or "").strip() and not (intake.reason or "").strip():
        return store.register(**common, state=IntentState.REJECTED_INPUT,
                              reason=f"request {shown_id(intake.request_id)} has no text, no order and no reason: "
                                     f"nothing to act on")
    return store.register(**common)


def build_refund_sensor(wf: Workflow, job: dg.JobDefinition, batch: dg.JobDefinition | None = None) -> dg.SensorDefinition:
    return build_record_sensor(
        wf, [job, *([batch] if batch else [])], name=f"{wf.name}__on_new_request", noun="refund request",
        table=refund_requests, id_column="request_id", to_intake=request_intake, register=register_request,
        description="Register each new refund request as an intent; empty or unreadable ones are recorded, "
                    "not launched.")
