"""Issue 9, identifiers: long external ids (RFC 5322 Message-IDs up to 2,048 characters) go end to end on
both backends: registered under a digest that fits intents.intent_id, triaged, filed, the writes in the
ledger; the original id is kept in the intake, source_ref, ticket_messages and the ledger's target. An id
the tables cannot hold under their unique indexes (over 2,048 characters, or not printable ASCII) ends as
rejected_input with a reason, and the next message still commits. On PostgreSQL every bounded column
(String(n)) is enforced, so these tests are meaningful there; SQLite checks the same flow."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy.exc
from pydantic import ValidationError
from sqlalchemy import select

from agent_pipelines.framework.intents import INTENT_ID_CHARS, IntentStore, record_intent_id
from agent_pipelines.framework.tables import approval_requests, escalations, input_requests, intents, writes
from agent_pipelines.framework.triggers import reject_row
from agent_pipelines.project import Project
from agent_pipelines.workflows.ticket_intake.models import MAX_MESSAGE_ID_CHARS
from resources.tickets import inbound_messages, ticket_messages
from sensors.tickets import message_intake
from tests.test_ticket_workflow import ALICE, WF, add_message, duplicates, filed_on, intent, make_defs, run, tick

NEW = ("Export of payment history to CSV times out", "The export from the Billing Portal times out for 2025.")
DUP = ("Invoice PDF download still failing", "Still the error page.")  # Alice's open T-1001: an append
NEXT = ("Mobile App crashes on login", "The Mobile App closes right after I sign in on Android.")


def rfc_id(length: int, tag: str = "k") -> str:
    """An RFC 5322-shaped Message-ID of exactly `length` characters: <local@domain>."""
    domain = "mail.gmail.example"
    local = (tag + "0123456789abcdefghijklmnopqrstuvwxyz.") * (length // 38 + 1)
    return f"<{local[:length - len(domain) - 3]}@{domain}>"


@pytest.fixture
def defs(desk: Project) -> Any:
    return make_defs(desk)


def ledger(project: Project, intent_id: str) -> list[dict[str, Any]]:
    with project.db.connect() as conn:
        return [dict(r) for r in conn.execute(select(writes).where(writes.c.intent_id == intent_id)).mappings()]


def stored_row(project: Project, intent_id: str) -> dict[str, Any]:
    with project.db.connect() as conn:
        return dict(conn.execute(select(intents).where(intents.c.intent_id == intent_id)).mappings().one())


def ticket_message(project: Project, message_id: str) -> dict[str, Any]:
    with project.db.connect() as conn:
        return dict(conn.execute(select(ticket_messages).where(ticket_messages.c.message_id == message_id))
                    .mappings().one())


def test_rfc_ids_have_the_length_asked_for():
    for n in (66, 1024, 2000, 2048):
        assert len(rfc_id(n)) == n and rfc_id(n).startswith("<") and rfc_id(n).endswith("@mail.gmail.example>")


@pytest.mark.parametrize("length", [1024, 2000, MAX_MESSAGE_ID_CHARS], ids=["1KB", "2000", "2048"])
def test_a_long_message_id_opens_a_ticket_and_the_next_message_commits(desk, defs, length):
    message_id = rfc_id(length)
    long_intent = add_message(desk, message_id, f"Alice Chen <{ALICE}>", *NEW)
    good = add_message(desk, "M-2", "bob.martin@acme.example", *NEXT)
    assert len(long_intent) <= INTENT_ID_CHARS and long_intent.startswith("ticket_intake:h")
    data = tick(desk, defs)
    assert [rr.run_key for rr in data.run_requests] == [long_intent, good]
    for intent_id in (long_intent, good):
        assert run(desk, defs, intent_id).success
        assert intent(desk, intent_id).state == "completed"
    done = stored_row(desk, long_intent)
    assert done["intake"]["message_id"] == message_id  # the original id, not its digest
    assert done["source_ref"] == f"inbound_messages:{message_id}@1"
    assert len(done["correlation_id"]) <= 200
    (ticket_id,) = filed_on(desk, message_id)
    filed = ticket_message(desk, message_id)
    assert (filed["ticket_id"], filed["intent_id"]) == (ticket_id, long_intent)
    assert [(w["action"], w["status"], w["target"]) for w in ledger(desk, long_intent)] == [
        ("create_ticket", "committed", f"tickets:{ticket_id}")]
    assert len(filed_on(desk, "M-2")) == 1 and ledger(desk, good)[0]["status"] == "committed"
    assert duplicates(desk) == 0


@pytest.mark.parametrize("length", [1024, 2000], ids=["1KB", "2000"])
def test_a_long_message_id_appends_to_the_open_ticket_with_the_id_in_the_ledger_target(desk, defs, length):
    message_id = rfc_id(length, tag="r")
    dup = add_message(desk, message_id, ALICE, *DUP)
    good = add_message(desk, "M-2", "bob.martin@acme.example", *NEXT)
    data = tick(desk, defs)
    assert [rr.run_key for rr in data.run_requests] == [dup, good]
    assert run(desk, defs, dup).success and run(desk, defs, good).success
    assert intent(desk, dup).state == "completed" and intent(desk, good).state == "completed"
    assert filed_on(desk, message_id) == ["T-1001"]
    (write,) = ledger(desk, dup)
    assert (write["action"], write["status"]) == ("append_to_ticket", "committed")
    assert write["target"] == f"ticket_messages:{message_id}"  # writes.target is Text: the full id
    assert ticket_message(desk, message_id)["intent_id"] == dup
    assert duplicates(desk) == 0


def test_a_long_message_id_without_a_subject_correlates_within_the_column(desk, defs):
    message_id = rfc_id(2000, tag="s")
    intent_id = add_message(desk, message_id, f"Alice Chen <{ALICE}>", "", NEW[1])
    tick(desk, defs)
    registered = stored_row(desk, intent_id)
    assert registered["state"] == "received"
    assert registered["correlation_id"] == f"{ALICE}:{message_id}"[:200]
    assert run(desk, defs, intent_id).success
    assert intent(desk, intent_id).state in ("completed", "waiting_for_input")


def test_long_message_ids_that_wait_for_input_or_approval_fit_those_tables(desk, defs):
    stranger_id, vip_id = rfc_id(2000, tag="q"), rfc_id(2000, tag="v")
    stranger = add_message(desk, stranger_id, "Sam Taylor <sam@mail.example>", "Mobile App won't start",
                           "It closes after the splash screen.")
    vip = add_message(desk, vip_id, "lucius.fox@wayne.example", "Billing Portal outage",
                      "The Billing Portal returns errors for all our users.")
    good = add_message(desk, "M-3", "bob.martin@acme.example", *NEXT)
    data = tick(desk, defs)
    assert [rr.run_key for rr in data.run_requests] == [stranger, vip, good]
    for intent_id in (stranger, vip, good):
        assert run(desk, defs, intent_id).success
    assert intent(desk, stranger).state == "waiting_for_input"
    assert intent(desk, vip).state == "waiting_for_approval"
    assert intent(desk, good).state == "completed"
    with desk.db.connect() as conn:
        assert conn.execute(select(input_requests.c.intent_id)).scalars().all() == [stranger]
        payload = conn.execute(select(approval_requests.c.payload)).scalar_one()
        assert conn.execute(select(escalations)).first() is None
    assert payload["writes"][0]["params"]["message_id"] == vip_id


# -- ids the tables cannot hold: rejected with a reason, the next message commits -------------------------
@pytest.mark.parametrize(
    ("message_id", "reason"),
    [
        ("<" + "é" * 600 + "@x>", "message_id must be printable ASCII (RFC 5322); character 2 is '\\xe9'"),
        ("<Ｍ-1@x>", "character 2 is '\\uff2d'"),           # a full-width look-alike of M
        ("<m-1\x00@x>", "character 5 is '\\x00'"),
        ("<m-1\n@x>", "character 5 is '\\n'"),
    ],
    ids=["1KB-non-ascii", "look-alike", "nul", "newline"],
)
def test_a_message_id_that_is_not_printable_ascii_is_rejected_and_the_next_commits(desk, defs, message_id,
                                                                                     reason):
    if "\x00" in message_id and desk.db.engine.dialect.name == "postgresql":
        # PostgreSQL text cannot hold NUL: the mail gateway's insert fails, nothing reaches the sensor.
        with pytest.raises(ValueError, match="NUL"):
            add_message(desk, message_id, f"Alice Chen <{ALICE}>", *NEW)
        with pytest.raises(ValidationError, match=re.escape(reason)):
            message_intake({"seq": 1, "message_id": message_id, "version": 1, "sender": ALICE, "subject": NEW[0],
                            "body": NEW[1], "attachments": None, "product": None, "received_at": None})
        return
    bad = add_message(desk, message_id, f"Alice Chen <{ALICE}>", *NEW)
    good = add_message(desk, "M-2", "bob.martin@acme.example", *NEXT)
    data = tick(desk, defs)
    assert [rr.run_key for rr in data.run_requests] == [good]
    rejected = stored_row(desk, bad)
    assert rejected["state"] == "rejected_input"
    assert rejected["reason"].startswith("unreadable inbound_messages row ") and reason in rejected["reason"]
    assert len(rejected["correlation_id"]) <= 200 and len(bad) <= INTENT_ID_CHARS
    assert run(desk, defs, good).success and intent(desk, good).state == "completed"


def test_a_message_id_over_2048_characters_is_rejected_with_the_limit(desk, defs):
    message_id = rfc_id(3000, tag="o")
    if desk.db.engine.dialect.name == "postgresql":
        # The table holds at most 2,048: the mail gateway's insert fails, nothing reaches the sensor.
        with pytest.raises(sqlalchemy.exc.DataError, match="too long"):
            add_message(desk, message_id, f"Alice Chen <{ALICE}>", *NEW)
        row = {"seq": 1, "message_id": message_id, "version": 1, "sender": ALICE, "subject": NEW[0], "body": NEW[1],
               "attachments": None, "product": None, "received_at": datetime(2026, 11, 24, tzinfo=UTC)}
        with pytest.raises(ValidationError, match="at most 2048 characters") as info:
            message_intake(row)
        # What the record sensor does with it: a rejection that fits every column on PostgreSQL.
        rejected, created = reject_row(IntentStore(desk.db), WF, inbound_messages, "message_id", row, info.value)
        assert created and rejected.state == "rejected_input" and "at most 2048 characters" in rejected.reason
        assert rejected.intent_id == record_intent_id(WF.name, message_id, 1)
        return
    bad = add_message(desk, message_id, f"Alice Chen <{ALICE}>", *NEW)  # SQLite does not enforce lengths
    good = add_message(desk, "M-2", "bob.martin@acme.example", *NEXT)
    data = tick(desk, defs)
    assert [rr.run_key for rr in data.run_requests] == [good]
    rejected = intent(desk, bad)
    assert rejected.state == "rejected_input" and "message_id\n  String should have at most 2048 characters" in (
        rejected.reason)
    assert rejected.reason.startswith("unreadable inbound_messages row <o0123") and "...(3,000 chars)@1: " in (
        rejected.reason)
    assert run(desk, defs, good).success and intent(desk, good).state == "completed"
