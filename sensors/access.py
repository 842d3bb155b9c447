"""access_offboarding__on_new_request: one intent and one run per new row in access_requests (a record
sensor, `framework.triggers.build_record_sensor`). This module holds what is specific to requests:
how a row becomes an intake, and its identity and correlation."""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg

from agent_pipelines.framework.intents import Intent, IntentStore, digest, record_intent_id
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.triggers import RECORD_BATCH, SeqCursor, build_record_sensor, read_rows, shown_id
from agent_pipelines.framework.workflow import Workflow
from agent_pipelines.workflows.access_offboarding.models import AccessRequestIntake
from resources.access import access_requests

RequestCursor = SeqCursor  # the sensor's cursor (in sensor_cursors): highest access_requests.seq handled


def request_intake(row: Mapping[str, Any]) -> AccessRequestIntake:
    """One access_requests row as the workflow's intake (raises on a row it cannot represent)."""
    return AccessRequestIntake(seq=row["seq"], request_id=row["request_id"], version=row["version"],
                               requester=row["requester"] or "", text=row["text"] or "", user_id=row["user_id"],
                               offboarding_ref=row["offboarding_ref"], submitted_at=row["submitted_at"])


def read_new_requests(runtime: AgentRuntime, cursor: SeqCursor,
                      limit: int = RECORD_BATCH) -> list[AccessRequestIntake]:
    """The requests after `cursor` as intakes (for tools and tests; the sensor builds them row by row)."""
    return [request_intake(r) for r in read_rows(runtime.db, access_requests, cursor.last_seq, limit)]


def register_request(store: IntentStore, wf: Workflow, intake: AccessRequestIntake) -> tuple[Intent, bool]:
    """Register one request as an intent: (request id, version) is its identity. A request with
    neither text nor a user id nor an HR reference has nothing to act on: recorded, not launched."""
    data = json.loads(intake.model_dump_json())
    # Requests about the same leaver share a correlation id (their HR reference, else their user id).
    correlation = intake.evidence_ref or intake.evidence_user_id or intake.request_id
    common = dict(intent_id=record_intent_id(wf.name, intake.request_id, intake.version), workflow=wf.name,
                  correlation_id=correlation[:200],
                  source_ref=f"access_requests:{intake.request_id}@{intake.version}",
                  source_digest=digest(json.dumps(data, sort_keys=True)), intake=data)
    if not intake.text.strip() and not (intake.user_id or "").strip() and not (intake.offboarding_ref or "").strip():
        return store.register(**common, state=IntentState.REJECTED_INPUT,
                              reason=f"request {shown_id(intake.request_id)} has no text, no user id and no HR reference: "
                                     f"nothing to act on")
    return store.register(**common)


def build_access_sensor(wf: Workflow, job: dg.JobDefinition, batch: dg.JobDefinition | None = None) -> dg.SensorDefinition:
    return build_record_sensor(
        wf, [job, *([batch] if batch else [])], name=f"{wf.name}__on_new_request", noun="access request", table=access_requests,
        id_column="request_id", to_intake=request_intake, register=register_request,
        description="Register each new access request as an intent; empty or unreadable ones are recorded, "
                    "not launched.")
