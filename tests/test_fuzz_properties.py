"""Issue 9, fuzzing: record rows of any shape become an intake or a rejection with a reason, and the record
sensor never raises or stalls on them; stored values that cannot even be decoded are rejected too; a
CI-sized run of scripts/fuzz.py. Example counts come from the hypothesis profile (tests/conftest.py:
`ci` 2,000, `dev` 300); the targets that tick a real sensor per example run at most DB_EXAMPLES."""

import importlib.util
import json
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.exc import DataError, SQLAlchemyError

from agent_pipelines.framework.intents import INTENT_ID_CHARS
from agent_pipelines.framework.tables import intents, sensor_cursors
from agent_pipelines.project import Project
from resources.tickets import inbound_messages
from tests.test_ticket_workflow import ALICE, SENSOR, add_message, intent, make_defs, tick

FUZZ = Path(__file__).resolve().parent.parent / "scripts" / "fuzz.py"
DB_EXAMPLES = 60  # a sensor tick on a real database per example


def load_fuzz() -> Any:
    spec = importlib.util.spec_from_file_location("fuzz_script", FUZZ)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fuzz = load_fuzz()


# -- strategies: what a driver can hand back for a row (SQLite stores anything in any column) -------------
hostile_text = st.one_of(
    st.text(max_size=40), st.sampled_from(["", " ", "\x00", "a\r\nb", "\u2028", "é" * 700, "x" * 120_000,
                                           "<" + "k" * 1020 + "@x>", "<" + "k" * 3000 + "@x>", "<Ｍ-1@x>", "NaN"]))
db_scalars = st.one_of(
    st.none(), hostile_text, st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=20), st.booleans(),
    st.datetimes(timezones=st.just(UTC)))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                         st.floats(allow_nan=True, allow_infinity=True), hostile_text)
json_values = st.recursive(json_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(["filename", "content_type", "size_bytes", "x"])
                                                | st.text(max_size=5), kids, max_size=4)), max_leaves=15)
attachments = st.one_of(
    json_values, st.lists(st.fixed_dictionaries({"filename": json_scalars},
                                                optional={"content_type": json_scalars, "size_bytes": json_scalars}),
                          max_size=4),
    st.just([{"filename": "a.pdf"}] * 101), st.just("a.pdf"))
message_rows = st.fixed_dictionaries({
    "seq": st.just(1), "message_id": st.one_of(hostile_text, db_scalars), "version": db_scalars | st.just(1),
    "sender": st.one_of(st.just(f"Alice Chen <{ALICE}>"), db_scalars), "subject": db_scalars,
    "body": db_scalars, "attachments": attachments, "product": db_scalars, "received_at": db_scalars})
request_rows = st.fixed_dictionaries({
    "seq": st.just(1), "request_id": st.one_of(hostile_text, db_scalars), "version": db_scalars | st.just(1),
    "requester": db_scalars, "text": db_scalars, "user_id": db_scalars, "offboarding_ref": db_scalars,
    "submitted_at": db_scalars})

PURE = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@PURE
@given(row=message_rows)
def test_any_message_row_becomes_an_intent_that_fits_or_a_rejection_with_a_reason(row):
    # The sensor's path with a store that checks the intent columns against their PostgreSQL lengths.
    assert fuzz.run_record(fuzz.TICKET, row) in (fuzz.ACCEPTED, fuzz.TYPED)


@PURE
@given(row=request_rows)
def test_any_access_request_row_becomes_an_intent_that_fits_or_a_rejection_with_a_reason(row):
    assert fuzz.run_record(fuzz.ACCESS, row) in (fuzz.ACCEPTED, fuzz.TYPED)


# -- a real sensor on the selected backend -----------------------------------------------------------------
@pytest.fixture
def defs(desk: Project) -> Any:
    return make_defs(desk)


def cursor_seq(project: Project) -> int:
    with project.db.connect() as conn:
        raw = conn.execute(select(sensor_cursors.c.cursor).where(sensor_cursors.c.sensor == SENSOR)).scalar()
    return json.loads(raw)["last_seq"] if raw else 0


def insert_row(project: Project, row: dict[str, Any]) -> int | None:
    """Insert as a mail gateway might; a value the database itself refuses never reaches the sensor."""
    values = {k: v for k, v in row.items() if k != "seq"}
    try:
        with project.db.begin() as conn:
            return conn.execute(inbound_messages.insert().values(**values)).inserted_primary_key[0]
    except (SQLAlchemyError, ValueError, TypeError, OverflowError):
        return None


@settings(max_examples=min(DB_EXAMPLES, settings.default.max_examples), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(row=message_rows)
def test_the_ticket_sensor_registers_or_rejects_any_stored_row_and_moves_on(desk, defs, row):
    seq = insert_row(desk, row)
    if seq is None:
        reject()
    tick(desk, defs)  # never raises
    assert cursor_seq(desk) == seq  # never stalls: the cursor is past the row
    with desk.db.connect() as conn:
        latest = conn.execute(select(intents).order_by(intents.c.created_at.desc()).limit(1)).mappings().first()
    stored_id = row["message_id"]
    if latest is not None and latest["source_ref"].startswith(f"inbound_messages:{stored_id}@"):
        assert len(latest["intent_id"]) <= INTENT_ID_CHARS and len(latest["correlation_id"]) <= 200
        assert latest["state"] in ("received", "rejected_input")
        assert latest["state"] == "received" or latest["reason"]


# Stored values a driver cannot decode: before, read_rows raised on every tick and the sensor stalled.
UNDECODABLE = [
    ("attachments", '[{"filename": "a", "size_bytes": ' + "9" * 5000 + "}]", "Exceeds the limit (4300 digits)"),
    ("attachments", "[" * 5000 + "]" * 5000, "RecursionError"),
]


@pytest.mark.parametrize(("column", "raw", "reason"), UNDECODABLE, ids=["5000-digit-number", "nested-5000"])
def test_a_stored_value_that_cannot_be_decoded_is_rejected_and_the_next_row_commits(desk, column, raw, reason):
    bad = add_message(desk, "M-1", ALICE, "Attachments", "See attached.")
    good = add_message(desk, "M-2", ALICE, "Export of payment history to CSV times out", "Billing Portal export.")
    cast = "CAST(:v AS JSON)" if desk.db.engine.dialect.name == "postgresql" else ":v"
    with desk.db.begin() as conn:
        conn.execute(text(f"UPDATE inbound_messages SET {column} = {cast} WHERE message_id = 'M-1'"), {"v": raw})
    data = tick(desk, make_defs(desk))
    assert [rr.run_key for rr in data.run_requests] == [good]
    rejected = intent(desk, bad)
    assert rejected.state == "rejected_input" and reason in rejected.reason
    assert rejected.reason.startswith("unreadable inbound_messages row M-1@1: UnreadableRow: a stored value cannot "
                                      "be decoded")
    assert cursor_seq(desk) == 2


def test_a_date_sqlite_holds_as_text_is_rejected_and_the_next_row_commits(desk, backend):
    if backend != "sqlite":
        with pytest.raises(DataError):  # PostgreSQL refuses it on the way in
            with desk.db.begin() as conn:
                conn.execute(text("INSERT INTO inbound_messages (message_id, received_at) VALUES ('M-1', 'never')"))
        return
    bad = add_message(desk, "M-1", ALICE, "Attachments", "See attached.")
    good = add_message(desk, "M-2", ALICE, "Export of payment history to CSV times out", "Billing Portal export.")
    with desk.db.begin() as conn:
        conn.execute(text("UPDATE inbound_messages SET received_at = 'never' WHERE message_id = 'M-1'"))
    data = tick(desk, make_defs(desk))
    assert [rr.run_key for rr in data.run_requests] == [good]
    assert intent(desk, bad).state == "rejected_input" and "Invalid isoformat string" in intent(desk, bad).reason


# -- the long-run script, CI-sized -------------------------------------------------------------------------
def test_the_fuzz_script_at_ci_size_finds_no_crash_and_no_slow_input(capsys):
    tally = fuzz.fuzz(2000, seed=9, targets=list(fuzz.TARGETS))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("fuzz: inputs=2000 ") and " crashes=0 over_1s=0 " in line, line
    assert not tally.crashes and not tally.over
