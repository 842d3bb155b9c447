"""ticket_intake__on_new_message: one intent and one run per new row in inbound_messages.

A record sensor: the cursor is the highest `seq` seen, so each row is read once however often the
sensor ticks, and a lost cursor only re-registers intents that already exist (same message id and
version, same intent). Sensors only read the system of record and write intents, never tickets."""

import json

import dagster as dg
from pydantic import BaseModel
from sqlalchemy import select

from agent_pipelines.framework.intents import Intent, IntentStore, digest, record_intent_id
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.triggers import launch_stopped, run_request
from agent_pipelines.framework.workflow import Workflow
from agent_pipelines.workflows.ticket_intake.models import MessageIntake
from agent_pipelines.workflows.ticket_intake.triage import normalize_subject
from resources.tickets import inbound_messages

BATCH = 200  # messages per tick: keeps a tick well inside the sensor gRPC timeout


class MessageCursor(BaseModel):
    last_seq: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "MessageCursor":
        return cls.model_validate_json(raw) if raw else cls()


def read_new_messages(runtime: AgentRuntime, cursor: MessageCursor, limit: int = BATCH) -> list[MessageIntake]:
    m = inbound_messages.c
    with runtime.db.connect() as conn:
        rows = conn.execute(select(inbound_messages).where(m.seq > cursor.last_seq).order_by(m.seq)
                            .limit(limit)).mappings().all()
    return [MessageIntake(seq=r["seq"], message_id=r["message_id"], version=r["version"], sender=r["sender"] or "",
                          subject=r["subject"] or "", body=r["body"] or "", attachments=tuple(r["attachments"] or ()),
                          product=r["product"], received_at=r["received_at"]) for r in rows]


def register_message(store: IntentStore, wf: Workflow, intake: MessageIntake) -> tuple[Intent, bool]:
    """Register one message as an intent: (message id, version) is its identity. A message with
    neither a sender nor a body has nothing to triage and no one to ask: recorded, not launched."""
    data = json.loads(intake.model_dump_json())
    # Replies share the thread's correlation id (sender + subject without "Re:"), so a follow-up can be
    # found next to the message that opened the ticket.
    thread = normalize_subject(intake.subject) or intake.message_id
    common = dict(intent_id=record_intent_id(wf.name, intake.message_id, intake.version), workflow=wf.name,
                  correlation_id=f"{intake.sender_email or '-'}:{thread}"[:200],
                  source_ref=f"inbound_messages:{intake.message_id}@{intake.version}",
                  source_digest=digest(json.dumps(data, sort_keys=True)), intake=data)
    if not intake.sender.strip() and not intake.body.strip():
        return store.register(**common, state=IntentState.REJECTED_INPUT,
                              reason=f"message {intake.message_id} has neither a sender nor a body: nothing to "
                                     f"triage and no one to ask")
    return store.register(**common)


def build_ticket_sensor(wf: Workflow, job: dg.JobDefinition) -> dg.SensorDefinition:
    @dg.sensor(name=f"{wf.name}__on_new_message", job=job, minimum_interval_seconds=10,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def on_new_message(context: dg.SensorEvaluationContext,
                       runtime: AgentRuntime) -> dg.SensorResult | dg.SkipReason:
        """Register each new inbound message as an intent; empty ones are recorded, not launched."""
        if stopped := launch_stopped(runtime.db, wf.name):
            return stopped
        cursor = MessageCursor.parse(context.cursor)
        new = read_new_messages(runtime, cursor)
        if not new:
            return dg.SkipReason(f"no inbound messages after seq {cursor.last_seq}")
        store = IntentStore(runtime.db)
        model = runtime.proposer().model_name
        requests: dict[str, dg.RunRequest] = {}
        rejected = 0
        for intake in new:
            intent, _created = register_message(store, wf, intake)
            if intent.state == IntentState.REJECTED_INPUT:
                rejected += 1
                context.log.info(f"{intake.message_id}: {intent.reason}")
            elif not intent.is_terminal:
                requests[intent.intent_id] = run_request(runtime.db, wf, intent, model=model)
        context.log.info(f"{len(new)} message(s): {len(requests)} run request(s), {rejected} rejected")
        return dg.SensorResult(run_requests=list(requests.values()),
                               cursor=MessageCursor(last_seq=new[-1].seq).model_dump_json())

    return on_new_message
