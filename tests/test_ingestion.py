"""Ingestion never loses a file and one bad record never stops a sensor: inbox files are known by
identity (inbox_files), record sensors keep their cursor in sensor_cursors, poison inputs become
rejected_input intents, and infrastructure errors leave the input to be retried on the next tick."""

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError

from agent_pipelines.framework.inbox import ingest_inbox
from agent_pipelines.framework.intents import IntentStore, file_intent_id, record_intent_id
from agent_pipelines.framework.tables import inbox_files, input_requests, intents, sensor_cursors
from agent_pipelines.framework.triggers import SeqCursor, build_record_sensor, register_file
from agent_pipelines.project import Project
from agent_pipelines.workflows.access_offboarding.workflow import AccessOffboarding
from agent_pipelines.workflows.invoice_matching.parsing import parse_invoice
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from resources.access import access_requests
from resources.inbox import InboxResource
from resources.system_of_record import po_lines, purchase_orders
from resources.tickets import inbound_messages
from sensors.access import register_request, request_intake
from sensors.invoices import build_invoice_sensor
from tests.conftest import invoice_json

INVOICES = "invoice_matching__on_new_invoice"
TICKETS = "ticket_intake__on_new_message"
OLD = 1_000_000_000  # 2001: older than any mtime the `drop` fixture gives


# -- helpers -------------------------------------------------------------------------------------------
def evaluate(project: Project, sensor: str | dg.SensorDefinition = INVOICES, cursor: str | None = None,
             **resources: Any) -> Any:
    """One evaluation with Dagster's cursor given explicitly (None: as a brand-new daemon would)."""
    if isinstance(sensor, str):
        sensor = project.definitions.get_repository_def().get_sensor_def(sensor)
    with dg.build_sensor_context(instance=project.instance, cursor=cursor, sensor_name=sensor.name,
                                 resources={**project.definitions.resources, **resources}) as ctx:
        return sensor.evaluate_tick(ctx)


def runs_of(project: Project, sensor: str = INVOICES) -> list[Any]:
    return [r for t in project.tick() if t.sensor == sensor for r in t.runs]


def count(project: Project, table: Any, *where: Any) -> int:
    with project.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def by_source(project: Project) -> dict[str, Any]:
    """Invoice intents by the file name that first registered them."""
    with project.db.connect() as conn:
        rows = conn.execute(select(intents).where(intents.c.workflow == "invoice_matching")).mappings().all()
    return {r["source_ref"].rsplit("/", 1)[-1]: r for r in rows}


def known_files(project: Project) -> dict[str, Any]:
    with project.db.connect() as conn:
        rows = conn.execute(select(inbox_files).where(inbox_files.c.sensor == INVOICES)).mappings().all()
    return {r["name"]: r for r in rows}


def rewrite(path: Path, content: bytes, mtime: int) -> None:
    path.write_bytes(content)
    os.utime(path, (mtime, mtime))


def add_po(project: Project, po_number: str) -> None:
    """An open PO of V-1 for 10 x 50.00 = 500.00, so a second clean invoice completes on its own."""
    with project.db.begin() as conn:
        conn.execute(purchase_orders.insert().values(po_number=po_number, vendor_id="V-1", status="open",
                                                     currency="USD", total_cents=50_000, invoiced_cents=0, version=1))
        conn.execute(po_lines.insert().values(po_number=po_number, line_no=1, sku="GAS-1", description="Gasket",
                                              quantity=10, unit_price_cents=5_000))


def invoice_for(po_number: str, number: str) -> bytes:
    return invoice_json(invoice_number=number, po_number=po_number, total="500.00",
                        lines=[{"description": "Gasket", "sku": "GAS-1", "qty": 10, "unit_price": "50.00"}])


# -- files known by identity ---------------------------------------------------------------------------
def test_a_file_moved_in_with_an_old_mtime_is_registered_and_runs(drop, seeded, tmp_path):
    add_po(seeded, "PO-9")
    drop("a.json", invoice_json())
    assert [r.success for r in runs_of(seeded)] == [True]
    outside = tmp_path / "outgoing"
    outside.mkdir()
    moved = outside / "b.json"
    rewrite(moved, invoice_for("PO-9", "INV-900"), OLD)  # older than every file already known
    os.rename(moved, seeded.settings.invoice_inbox / "b.json")
    assert [r.success for r in runs_of(seeded)] == [True]
    assert {name: row["state"] for name, row in by_source(seeded).items()} == {
        "a.json": "completed", "b.json": "completed"}
    assert known_files(seeded)["b.json"]["mtime_ns"] == OLD * 10**9
    assert runs_of(seeded) == []


def test_rewritten_in_place_new_content_is_a_new_intent_same_content_is_nothing(drop, seeded):
    path = drop("a.json", invoice_json())
    first = evaluate(seeded)
    assert [rr.run_key for rr in first.run_requests] == [file_intent_id("invoice_matching", invoice_json())]
    second_content = invoice_json(invoice_number="INV-101")
    rewrite(path, second_content, 1_800_000_500)
    second = evaluate(seeded)
    assert [rr.run_key for rr in second.run_requests] == [file_intent_id("invoice_matching", second_content)]
    assert count(seeded, intents) == 2 and count(seeded, inbox_files) == 2
    # the same bytes written again (a new mtime): nothing new, and the row learns the new mtime so the
    # next tick does not even read the file
    rewrite(path, second_content, 1_800_000_900)
    again = evaluate(seeded)
    assert again.skip_message.startswith("no new files")
    assert count(seeded, intents) == 2 and count(seeded, inbox_files) == 2
    with seeded.db.connect() as conn:
        mtimes = set(conn.execute(select(inbox_files.c.mtime_ns)).scalars())
    assert 1_800_000_900 * 10**9 in mtimes


def test_a_half_written_file_waits_until_it_settles(drop, seeded):
    inbox = seeded.settings.invoice_inbox
    slow = {"invoice_inbox": InboxResource(path=str(inbox), settle_seconds=3600)}
    path = drop("a.json", invoice_json())
    now = time.time()
    os.utime(path, (now, now))  # being written right now
    waiting = evaluate(seeded, **slow)
    assert waiting.skip_message == f"no new files in {inbox} (1 still being written)"
    assert count(seeded, intents) == 0 and count(seeded, inbox_files) == 0
    os.utime(path, (now - 7200, now - 7200))  # untouched for two hours: complete
    assert len(evaluate(seeded, **slow).run_requests) == 1
    assert count(seeded, intents) == 1 and set(known_files(seeded)) == {"a.json"}


def test_directories_symlinks_and_dotfiles_are_skipped_and_the_good_files_still_register(drop, seeded, tmp_path):
    inbox = seeded.settings.invoice_inbox
    drop("a.json", invoice_json())
    (inbox / "archive").mkdir()
    (inbox / "archive" / "old.json").write_bytes(invoice_json(invoice_number="INV-OLD"))
    target = tmp_path / "elsewhere.json"
    target.write_bytes(invoice_json(invoice_number="INV-LINK"))
    (inbox / "link.json").symlink_to(target)
    drop(".a.json.tmp", invoice_json(invoice_number="INV-TMP"))
    drop("b.json", invoice_json(invoice_number="INV-200", total="1,300.00"))
    data = evaluate(seeded)
    assert len(data.run_requests) == 2
    assert set(by_source(seeded)) == set(known_files(seeded)) == {"a.json", "b.json"}


def test_a_poison_file_between_two_good_ones_is_rejected_and_both_good_ones_commit(drop, seeded):
    add_po(seeded, "PO-9")
    drop("a.json", invoice_json())
    # A total no amount column can hold: the parser's checked number conversion rejects it (the safety
    # net for parsers that raise anything else is test_register_file_records_any_parser_exception_as_rejected_input).
    drop("poison.json", invoice_json(invoice_number="INV-999", total=10**30))
    drop("c.json", invoice_for("PO-9", "INV-901"))
    assert [r.success for r in runs_of(seeded)] == [True, True]
    rows = by_source(seeded)
    assert {name: row["state"] for name, row in rows.items()} == {
        "a.json": "completed", "poison.json": "rejected_input", "c.json": "completed"}
    assert rows["poison.json"]["reason"].startswith("unreadable input: poison.json: total has more than 18 digits")
    assert {n: r["outcome"] for n, r in known_files(seeded).items()} == {
        "a.json": "registered", "poison.json": "rejected", "c.json": "registered"}
    assert runs_of(seeded) == []


def test_register_file_records_any_parser_exception_as_rejected_input(drop, seeded):
    path = drop("a.json", invoice_json())

    def explode(name: str, content: bytes) -> Any:
        raise RuntimeError(f"parser bug on {name}")

    intent, created = register_file(IntentStore(seeded.db), InvoiceMatching(), path, explode)
    assert created and intent.state == "rejected_input"
    assert intent.reason == "unreadable input: the parser raised RuntimeError: parser bug on a.json"
    assert intent.intake["preview"].startswith("{")


def test_an_infrastructure_error_stops_the_tick_and_the_file_is_retried(drop, seeded):
    wf = InvoiceMatching()
    job = seeded.definitions.get_job_def(wf.name)
    failures = ["b.json"]

    def flaky(name: str, content: bytes) -> Any:
        if name in failures:
            failures.remove(name)
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return parse_invoice(name, content)

    sensor = build_invoice_sensor(wf, job, parse=flaky)
    drop("a.json", invoice_json())
    drop("b.json", invoice_json(invoice_number="INV-200", total="1,300.00"))
    drop("c.json", invoice_json(invoice_number="INV-300", po_number="PO-404"))
    first = evaluate(seeded, sensor)
    assert len(first.run_requests) == 1  # a.json; the tick stopped at b.json, c.json was not reached
    assert set(known_files(seeded)) == {"a.json"} and count(seeded, intents) == 1
    second = evaluate(seeded, sensor)
    assert len(second.run_requests) == 2
    assert set(known_files(seeded)) == {"a.json", "b.json", "c.json"} and count(seeded, intents) == 3
    assert evaluate(seeded, sensor).skip_message.startswith("no new files")


def test_a_tick_stopped_by_a_file_alone_still_hands_on_the_files_its_chunk_registered(drop, seeded):
    """b.json registers with its chunk; a.json, listed before it, goes alone (its intake cannot be
    serialised in the chunk) and meets an infrastructure error there, which stops the tick. b.json's
    intent and inbox_files row are committed, so it is launched now: next tick it is known and not listed."""
    wf = InvoiceMatching()
    calls = {"a.json": 0}

    class Unserialisable(BaseModel):
        def model_dump_json(self, **_: Any) -> str:
            raise RuntimeError("cannot serialise")

    def parse(name: str, content: bytes) -> Any:
        if name == "a.json":
            calls[name] += 1
            if calls[name] == 1:
                return Unserialisable()
            if calls[name] == 2:
                raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return parse_invoice(name, content)

    sensor = build_invoice_sensor(wf, seeded.definitions.get_job_def(wf.name), parse=parse)
    drop("a.json", invoice_json())
    drop("b.json", invoice_json(invoice_number="INV-200", po_number="PO-404"))
    first = evaluate(seeded, sensor)
    assert len(first.run_requests) == 1
    assert set(known_files(seeded)) == {"b.json"} and first.run_requests[0].run_key == by_source(seeded)["b.json"]["intent_id"]
    second = evaluate(seeded, sensor)  # a.json again, alone in its chunk now: it parses and registers
    assert len(second.run_requests) == 1 and set(known_files(seeded)) == {"a.json", "b.json"}
    assert second.run_requests[0].run_key == by_source(seeded)["a.json"]["intent_id"]


def test_a_value_the_database_refuses_fails_the_chunk_and_only_its_file_is_skipped(drop, seeded, backend, capfd):
    """A tick's files register in one transaction (inbox._ingest_chunk). A file whose intent PostgreSQL
    refuses (a correlation over intents.correlation_id's 200 characters) fails that transaction: the
    chunk then goes one file at a time, so only that file is skipped (and retried next tick). SQLite
    does not enforce the length: there it registers like the others."""
    wf = InvoiceMatching()

    def long_reference(name: str, content: bytes) -> Any:
        intake = parse_invoice(name, content)
        return intake.model_copy(update={"vendor_ref": "V" * 300}) if name == "b.json" else intake

    sensor = build_invoice_sensor(wf, seeded.definitions.get_job_def(wf.name), parse=long_reference)
    drop("a.json", invoice_json())
    drop("b.json", invoice_json(invoice_number="INV-200", total="1,300.00"))
    drop("c.json", invoice_json(invoice_number="INV-300", po_number="PO-404"))
    evaluate(seeded, sensor)
    logged = capfd.readouterr().err  # the sensor's context.log
    if backend == "postgres":
        assert "3 files together: DataError" in logged and "registering them one at a time" in logged
        assert "b.json: DataError" in logged and "skipped this tick, retried on the next one" in logged
        assert set(known_files(seeded)) == {"a.json", "c.json"} and count(seeded, intents) == 2
    else:
        assert "one at a time" not in logged and "3 new file(s)" in logged
        assert set(known_files(seeded)) == {"a.json", "b.json", "c.json"} and count(seeded, intents) == 3


def test_a_tick_reads_at_most_a_batch_of_new_files_and_the_next_tick_takes_the_rest(drop, seeded):
    for i in range(3):
        drop(f"inv-{i}.json", invoice_json(invoice_number=f"INV-{i}"))
    store, log = IntentStore(seeded.db), logging.getLogger("test_ingestion")

    def ingest() -> Any:
        return ingest_inbox(store, InvoiceMatching(), INVOICES, seeded.settings.invoice_inbox, parse_invoice,
                            settle_s=1.0, log=log, batch=2)

    first = ingest()
    assert (len(first.registered), first.more, first.known) == (2, True, 2)
    assert set(known_files(seeded)) == {"inv-0.json", "inv-1.json"}  # oldest first
    second = ingest()
    assert (len(second.registered), second.more, second.known) == (1, False, 3)
    assert ingest().registered == []


def test_a_file_never_answers_its_own_question(drop, seeded):
    path = drop("inv-100.json", invoice_json(po_number="PO-404"))
    runs_of(seeded)
    [waiting] = [i for i in seeded.intents("invoice_matching") if i["state"] == "waiting_for_input"]

    def still_open() -> bool:
        with seeded.db.connect() as conn:
            return conn.execute(select(input_requests.c.status).where(
                input_requests.c.intent_id == waiting["intent_id"])).scalar_one() == "pending"

    assert still_open()
    os.utime(path, (1_800_000_700, 1_800_000_700))  # touched: same bytes
    drop("copy-of-inv-100.json", path.read_bytes())  # the same bytes under another name
    assert runs_of(seeded) == []
    with seeded.db.begin() as conn:  # even a lost table re-scans without answering anything
        conn.execute(delete(inbox_files))
    runs_of(seeded)
    assert still_open() and count(seeded, intents) == 1
    assert IntentStore(seeded.db).get(waiting["intent_id"]).state == "waiting_for_input"


def test_the_inbox_table_is_the_cursor_whatever_dagster_remembers(drop, seeded):
    drop("a.json", invoice_json())
    first = evaluate(seeded, cursor=None)
    assert len(first.run_requests) == 1 and first.cursor == '{"known_files": 1}'
    assert evaluate(seeded, cursor=None).skip_message.startswith("no new files")
    assert evaluate(seeded, cursor='{"mtime_ns": 0, "names": []}').skip_message.startswith("no new files")
    assert count(seeded, intents) == 1


# -- record sensors ------------------------------------------------------------------------------------
def add_message(project: Project, message_id: str, **extra: Any) -> str:
    with project.db.begin() as conn:
        conn.execute(inbound_messages.insert().values(
            message_id=message_id, sender="alice@acme.example", subject="Export times out",
            body="The billing export times out.", received_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC), **extra))
    return record_intent_id("ticket_intake", message_id, 1)


def add_request(project: Project, request_id: str) -> str:
    with project.db.begin() as conn:
        conn.execute(access_requests.insert().values(
            request_id=request_id, requester="hr@acme.example", text="Offboard u-10042 (HR-2026-0117)",
            user_id="u-10042", offboarding_ref="HR-2026-0117", submitted_at=datetime(2026, 11, 24, 9, tzinfo=UTC)))
    return record_intent_id("access_offboarding", request_id, 1)


def stored_cursor(project: Project, sensor: str) -> int:
    with project.db.connect() as conn:
        raw = conn.execute(select(sensor_cursors.c.cursor).where(sensor_cursors.c.sensor == sensor)).scalar_one()
    return SeqCursor.parse(raw).last_seq


def test_a_message_that_breaks_intake_building_is_rejected_and_the_next_one_registers(project):
    good = add_message(project, "M-1")
    not_objects = add_message(project, "M-2", attachments=["invoice.pdf"])  # a list, but not of attachments
    not_a_list = add_message(project, "M-3", attachments=5)
    last = add_message(project, "M-4")
    data = evaluate(project, TICKETS)
    assert [rr.run_key for rr in data.run_requests] == [good, last]
    store = IntentStore(project.db)
    for intent_id, error in ((not_objects, "ValidationError"), (not_a_list, "TypeError")):
        it = store.get(intent_id)
        assert it.state == "rejected_input"
        assert it.reason.startswith(f"unreadable inbound_messages row {intent_id.split(':')[1]}: {error}: ")
        assert it.intake["raw"]["message_id"] == intent_id.split(":")[1].split("@")[0]
    assert stored_cursor(project, TICKETS) == 4


def test_the_record_cursor_lives_in_our_database_not_in_dagsters(project):
    add_message(project, "M-1")
    add_message(project, "M-2")
    assert len(evaluate(project, TICKETS, cursor=None).run_requests) == 2
    transitions = count(project, intents)
    # a second daemon (or `tick`) with no Dagster cursor, or a stale one, starts where the first stopped
    assert evaluate(project, TICKETS, cursor=None).skip_message == "no inbound messages after seq 2"
    assert evaluate(project, TICKETS, cursor='{"last_seq": 0}').skip_message == "no inbound messages after seq 2"
    assert count(project, intents) == transitions
    third = add_message(project, "M-3")
    assert [rr.run_key for rr in evaluate(project, TICKETS, cursor=None).run_requests] == [third]
    assert stored_cursor(project, TICKETS) == 3


def test_a_row_that_raises_is_rejected_and_an_infrastructure_error_is_retried(project):
    wf = AccessOffboarding()
    job = project.definitions.get_job_def(wf.name)
    bad, flaky = {"R-2"}, {"R-3"}

    def to_intake(row: Any) -> Any:
        if row["request_id"] in bad:
            raise RuntimeError("unexpected form layout")
        if row["request_id"] in flaky:
            flaky.clear()
            raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))
        return request_intake(row)

    name = "test__on_new_request"
    sensor = build_record_sensor(wf, [job], name=name, noun="access request", table=access_requests,
                                 id_column="request_id", to_intake=to_intake, register=register_request,
                                 description="test")
    r1, r2, r3, r4 = (add_request(project, f"R-{i}") for i in range(1, 5))
    first = evaluate(project, sensor)
    assert [rr.run_key for rr in first.run_requests] == [r1]  # R-2 rejected, stopped at R-3
    assert stored_cursor(project, name) == 2  # before R-3: it is retried
    it = IntentStore(project.db).get(r2)
    assert (it.state, it.reason) == ("rejected_input",
                                     "unreadable access_requests row R-2@1: RuntimeError: unexpected form layout")
    second = evaluate(project, sensor)
    assert [rr.run_key for rr in second.run_requests] == [r3, r4]
    assert stored_cursor(project, name) == 4
    assert count(project, intents) == 4
