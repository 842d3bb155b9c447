"""`agent-pipelines bench`: the batch path measured against a plain-Python floor in the same run.

`batch` mode seeds N purchase orders and N matching invoices in a fresh state, registers the N intents
and pushes them through the invoice batch job (runs of `--batch` intents, as the sensors launch a
flood); then, on the same database, a plain-Python loop does the same five steps per invoice (read the
PO and its lines, propose the match with the same offline matcher, validate the arithmetic, write once
under a UNIQUE key, read back): the floor. It prints ms per intent for both, their ratio, the peak RSS,
and duplicate writes counted from the tables.

`flood` mode drops N invoice files into the inbox and ticks (sensors, adaptive batching, runs) until
every intent is settled: intents per minute, file to verified write."""

import json
import os
import resource
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, func, insert, select

from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.intents import file_intent_id
from agent_pipelines.framework.ledger import duplicate_ledger_writes
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.tables import intents
from agent_pipelines.framework.workflow import Workflow
from agent_pipelines.workflows.invoice_matching.models import InvoiceIntake, InvoiceLine

VENDOR = "V-BENCH"
REGISTER_CHUNK = 1000


def po_number(i: int) -> str:
    return f"PO-N{i:06d}"


def seed(conn: Connection, n: int) -> None:
    """Vendor V-BENCH and n open POs of 1,000.00 (100 x 5.00 bolts + 50 x 10.00 brackets)."""
    from resources.system_of_record import po_lines, purchase_orders, vendors

    if conn.execute(select(vendors.c.vendor_id).where(vendors.c.vendor_id == VENDOR)).first() is None:
        conn.execute(vendors.insert().values(vendor_id=VENDOR, name="Bench Supply", status="active", currency="USD",
                                             payment_account="DE89370400440532013000", payment_terms_days=30))
    for start in range(0, n, REGISTER_CHUNK):
        rng = range(start, min(n, start + REGISTER_CHUNK))
        conn.execute(purchase_orders.insert(), [dict(po_number=po_number(i), vendor_id=VENDOR, status="open",
                                                     currency="USD", total_cents=100_000, invoiced_cents=0,
                                                     version=1) for i in rng])
        conn.execute(po_lines.insert(), [
            *[dict(po_number=po_number(i), line_no=1, sku="BLT-8", description="Hex bolts M8", quantity=100,
                   unit_price_cents=500) for i in rng],
            *[dict(po_number=po_number(i), line_no=2, sku="BRK-1", description="Steel bracket", quantity=50,
                   unit_price_cents=1000) for i in rng]])


def intakes(n: int) -> list[InvoiceIntake]:
    """n clean invoices, one per PO, each billing exactly its PO."""
    lines = (InvoiceLine(description="Hex bolts M8", sku="BLT-8", quantity=100, unit_price_cents=500, amount_cents=50_000),
             InvoiceLine(description="Steel bracket", sku="BRK-1", quantity=50, unit_price_cents=1000, amount_cents=50_000))
    return [InvoiceIntake(source_name=f"bench-{i:06d}.json", format="json", vendor_ref=VENDOR,
                          invoice_number=f"INV-B{i:06d}", po_number=po_number(i), currency="USD", total_cents=100_000,
                          invoice_date=date(2026, 11, 3), due_date=date(2026, 12, 3), lines=lines,
                          memo="bench") for i in range(n)]


def register(db: Database, wf: Workflow, docs: Sequence[InvoiceIntake]) -> list[str]:
    """Register the intents as a sensor would (same ids), many per transaction."""
    now, ids = utcnow(), []
    rows = []
    for doc in docs:
        intent_id = file_intent_id(wf.name, doc.model_dump_json().encode())
        ids.append(intent_id)
        rows.append(dict(intent_id=intent_id, workflow=wf.name, correlation_id=f"{doc.vendor_ref}:{doc.invoice_number}",
                         state=IntentState.RECEIVED, source_ref=doc.source_name, source_digest="0" * 64,
                         intake=doc.model_dump(mode="json"), created_at=now, updated_at=now))
    with db.begin() as conn:
        for start in range(0, len(rows), REGISTER_CHUNK):
            conn.execute(insert(intents), rows[start:start + REGISTER_CHUNK])
    return ids


def invoice_file(doc: InvoiceIntake) -> bytes:
    return json.dumps({
        "invoice_number": doc.invoice_number, "vendor": doc.vendor_ref, "po_number": doc.po_number, "currency": "USD",
        "invoice_date": "2026-11-03", "due_date": "2026-12-03", "total": f"{doc.total_cents / 100:,.2f}",
        "lines": [{"description": li.description, "sku": li.sku, "qty": li.quantity,
                   "unit_price": f"{li.unit_price_cents / 100:.2f}"} for li in doc.lines],
        "memo": doc.memo}).encode()


def write_files(inbox: Path, docs: Sequence[InvoiceIntake]) -> None:
    """Complete files, as if copied in a minute ago (past the inbox sensor's settle time)."""
    old = time.time() - 60
    for doc in docs:
        path = inbox / doc.source_name
        path.write_bytes(invoice_file(doc))
        os.utime(path, (old, old))


# -- the floor: the same five steps in plain Python, one transaction per invoice ----------------------
def floor(db: Database, docs: Sequence[InvoiceIntake]) -> float:
    """Seconds for the five steps over `docs` (POs seeded), with a UNIQUE-keyed write per invoice."""
    from agent_pipelines.workflows.invoice_matching import matching
    from agent_pipelines.workflows.invoice_matching.models import (
        MatchContext,
        POLineSnapshot,
        POSnapshot,
        VendorSnapshot,
    )
    from resources.system_of_record import po_lines, purchase_orders, vendors

    meta = MetaData()
    paid = Table("bench_floor_payments", meta, Column("invoice_id", String(80), primary_key=True),
                 Column("po_number", String(32), nullable=False), Column("amount_cents", Integer, nullable=False))
    meta.drop_all(db.engine)
    meta.create_all(db.engine)
    with db.connect() as conn:
        v = conn.execute(select(vendors).where(vendors.c.vendor_id == VENDOR)).mappings().one()
    vendor = VendorSnapshot(**{k: v[k] for k in VendorSnapshot.model_fields})
    started = time.perf_counter()
    for doc in docs:
        with db.begin() as conn:
            po = conn.execute(select(purchase_orders).where(purchase_orders.c.po_number == doc.po_number)).mappings().one()
            lines = conn.execute(select(po_lines).where(po_lines.c.po_number == doc.po_number)).mappings().all()
            snap = POSnapshot(**{k: po[k] for k in POSnapshot.model_fields if k != "lines"},
                              lines=tuple(POLineSnapshot(**{k: li[k] for k in POLineSnapshot.model_fields}) for li in lines))
            proposal = matching.propose(doc, MatchContext(vendor=vendor, candidates=(snap,), already_staged=None))
            if matching.matched_amount(doc, snap, proposal.line_matches) != proposal.matched_po_amount_cents:
                raise AssertionError(f"{doc.invoice_number}: arithmetic does not hold")
            key = f"SI-{VENDOR}-{doc.invoice_number}"
            if conn.execute(select(paid.c.invoice_id).where(paid.c.invoice_id == key)).first() is None:
                conn.execute(paid.insert().values(invoice_id=key, po_number=snap.po_number,
                                                  amount_cents=proposal.payable_cents))
            back = conn.execute(select(paid.c.amount_cents).where(paid.c.invoice_id == key)).scalar_one()
            if back != proposal.payable_cents:
                raise AssertionError(f"{key}: reads back {back}")
    elapsed = time.perf_counter() - started
    meta.drop_all(db.engine)
    return elapsed


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def duplicate_writes(db: Database, wf: Workflow) -> int:
    with db.connect() as conn:
        return duplicate_ledger_writes(conn) + wf.duplicate_writes(conn)


def settled_counts(db: Database, workflow: str) -> dict[str, int]:
    with db.connect() as conn:
        rows = conn.execute(select(intents.c.state, func.count()).where(intents.c.workflow == workflow)
                            .group_by(intents.c.state))
        return {str(s): int(n) for s, n in rows}


def summary(n: int, seconds: float, floor_s: float | None, dups: int, **extra: Any) -> dict[str, Any]:
    ms = seconds * 1000 / n
    floor_ms = floor_s * 1000 / n if floor_s is not None else None
    return {"n": n, "ms_per_intent": round(ms, 3),
            "floor_ms_per_intent": round(floor_ms, 3) if floor_ms is not None else None,
            "ratio": round(ms / floor_ms, 2) if floor_ms else None, "peak_rss_mb": peak_rss_mb(),
            "duplicate_writes": dups, "intents_per_min": round(n / seconds * 60, 1), **extra}
