"""ticket_intake__on_new_message: one intent and one run per new row in inbound_messages (a record
sensor, `framework.triggers.build_record_sensor`). This module holds what is specific to messages:
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
from agent_pipelines.workflows.ticket_intake.models import ATTACHMENT_SHAPE, MessageIntake, kind_of
from agent_pipelines.workflows.ticket_intake.triage import normalize_subject
from resources.tickets import inbound_messages

MessageCursor = SeqCursor  # the sensor's cursor (in sensor_cursors): highest inbound_messages.seq handled


def message_intake(r: Mapping[str, Any]) -> MessageIntake:
    """One inbound_messages row as the workflow's intake. A row it cannot represent raises with a reason
    a person can act on (TypeError: attachments of the wrong shape; pydantic's ValidationError naming the
    field: wrong item shapes, text where a number belongs or the reverse, text over the model's limits);
    the record sensor records it as rejected_input and goes on with the next row."""
    attachments = r["attachments"]
    if attachments is not None and not isinstance(attachments, (list, tuple)):
        raise TypeError(f"attachments must be {ATTACHMENT_SHAPE}, not {kind_of(attachments)}")
    return MessageIntake(seq=r["seq"], message_id=r["message_id"], version=r["version"], sender=r["sender"] or "",
                         subject=r["subject"] or "", body=r["body"] or "", attachments=tuple(attachments or ()),
                         product=r["product"], received_at=r["received_at"])


def read_new_messages(runtime: AgentRuntime, cursor: SeqCursor, limit: int = RECORD_BATCH) -> list[MessageIntake]:
    """The messages after `cursor` as intakes (for tools and tests; the sensor builds them row by row)."""
    return [message_intake(r) for r in read_rows(runtime.db, inbound_messages, cursor.last_seq, limit)]


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
                              reason=f"message {shown_id(intake.message_id)} has neither a sender nor a body: nothing to "
                                     f"triage and no one to ask")
    return store.register(**common)


def build_ticket_sensor(wf: Workflow, job: dg.JobDefinition, batch: dg.JobDefinition | None = None) -> dg.SensorDefinition:
    return build_record_sensor(
        wf, [job, *([batch] if batch else [])], name=f"{wf.name}__on_new_message", noun="inbound message", table=inbound_messages,
        id_column="message_id", to_intake=message_intake, register=register_message,
        description="Register each new inbound message as an intent; empty or unreadable ones are recorded, "
                    "not launched.")
