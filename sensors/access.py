"""access_offboarding__on_new_request: one intent and one run per new row in access_requests.

A record sensor: the cursor is the highest `seq` seen, so each row is read once however often the
sensor ticks, and a lost cursor only re-registers intents that already exist (same request id and
version, same intent). Sensors only read the system of record and write intents, never accounts."""

import json

import dagster as dg
from pydantic import BaseModel
from sqlalchemy import select

from agent_pipelines.framework.intents import Intent, IntentStore, digest, record_intent_id
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.triggers import launch_stopped, run_request
from agent_pipelines.framework.workflow import Workflow
from agent_pipelines.workflows.access_offboarding.models import AccessRequestIntake
from resources.access import access_requests

BATCH = 200  # requests per tick: keeps a tick well inside the sensor gRPC timeout


class RequestCursor(BaseModel):
    last_seq: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "RequestCursor":
        return cls.model_validate_json(raw) if raw else cls()


def read_new_requests(runtime: AgentRuntime, cursor: RequestCursor, limit: int = BATCH) -> list[AccessRequestIntake]:
    r = access_requests.c
    with runtime.db.connect() as conn:
        rows = conn.execute(select(access_requests).where(r.seq > cursor.last_seq).order_by(r.seq)
                            .limit(limit)).mappings().all()
    return [AccessRequestIntake(seq=row["seq"], request_id=row["request_id"], version=row["version"],
                                requester=row["requester"] or "", text=row["text"] or "", user_id=row["user_id"],
                                offboarding_ref=row["offboarding_ref"], submitted_at=row["submitted_at"])
            for row in rows]


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
                              reason=f"request {intake.request_id} has no text, no user id and no HR reference: "
                                     f"nothing to act on")
    return store.register(**common)


def build_access_sensor(wf: Workflow, job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(name=f"{wf.name}__on_new_request", job=job, minimum_interval_seconds=10,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def on_new_request(context: dg.SensorEvaluationContext,
                       runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        """Register each new access request as an intent; empty ones are recorded, not launched."""
        if stopped := launch_stopped(runtime.db, wf.name):
            return stopped
        cursor = RequestCursor.parse(context.cursor)
        new = read_new_requests(runtime, cursor)
        if not new:
            return dg.SkipReason(f"no access requests after seq {cursor.last_seq}")
        store = IntentStore(runtime.db)
        model = runtime.proposer().model_name
        requests: dict[str, dg.RunRequest] = {}
        rejected = 0
        for intake in new:
            intent, _created = register_request(store, wf, intake)
            if intent.state == IntentState.REJECTED_INPUT:
                rejected += 1
                context.log.info(f"{intake.request_id}: {intent.reason}")
            elif not intent.is_terminal:
                requests[intent.intent_id] = run_request(runtime.db, wf, intent, model=model)
        context.log.info(f"{len(new)} request(s): {len(requests)} run request(s), {rejected} rejected")
        return dg.SensorResult(run_requests=list(requests.values()),
                               cursor=RequestCursor(last_seq=new[-1].seq).model_dump_json())

    return on_new_request
