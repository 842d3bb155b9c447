"""One migrated database for the adversarial module (SQLite file or a fresh PostgreSQL database, made
the way tests/conftest.py makes them, at module scope), seeded with the invoice system of record, the
identity directory and the adversarial toolset's tables; and the one-line summary at the end."""

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from agent_pipelines.framework import controls
from agent_pipelines.project import Project
from agent_pipelines.settings import Settings
from agent_pipelines.workflows.access_offboarding import demo_data as access_demo
from agent_pipelines.workflows.access_offboarding.workflow import AccessOffboarding
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from agent_pipelines.workflows.ticket_intake.workflow import TicketIntake
from resources.access import directory_accounts, role_grants
from resources.system_of_record import po_lines, purchase_orders, scheduled_payments, staged_invoices, vendors
from resources.tickets import ticket_messages, tickets
from tests.conftest import fresh_database

from .cases import (
    DIRECT_USER,
    Env,
    KS_TOOL,
    KS_WORKFLOW,
    STAGED_BOOL,
    STAGED_OK,
    adv_customers,
    adv_metadata,
    adv_policy,
    adv_registry,
    observed_registry,
    summary_line,
)

@pytest.fixture(scope="module")
def adv_db_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(backend, tmp_path_factory.mktemp("adversarial"), prefix="ap_adv") as url:
        yield url


@pytest.fixture(scope="module")
def adv(adv_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    old_home = os.environ.get("DAGSTER_HOME")
    os.environ.pop("DAGSTER_HOME", None)
    project = Project(Settings.from_env(tmp_path_factory.mktemp("adv_state"), env={"AGENT_PIPELINES_DB_URL": adv_db_url}))
    try:
        project.prepare()  # migrates; sets DAGSTER_HOME (restored below)
        db = project.db
        adv_metadata.create_all(db.engine)
        with db.begin() as conn:
            conn.execute(vendors.insert(), [
                dict(vendor_id="V-1", name="Acme Supply", status="active", currency="USD",
                     payment_account="DE89370400440532013000", payment_terms_days=30),
                dict(vendor_id="V-2", name="Held Corp", status="on_hold", currency="USD",
                     payment_account="GB33BUKB20201555555555", payment_terms_days=30)])
            conn.execute(purchase_orders.insert(), [
                dict(po_number="PO-1", vendor_id="V-1", status="open", currency="USD", total_cents=100_000,
                     invoiced_cents=0, version=1),
                dict(po_number="PO-2", vendor_id="V-2", status="open", currency="USD", total_cents=50_000,
                     invoiced_cents=0, version=1)])
            conn.execute(po_lines.insert(), [
                dict(po_number="PO-1", line_no=1, sku="BLT-8", description="Hex bolts M8", quantity=100,
                     unit_price_cents=500),
                dict(po_number="PO-1", line_no=2, sku="BRK-1", description="Steel bracket", quantity=50,
                     unit_price_cents=1000),
                dict(po_number="PO-2", line_no=1, sku="X", description="Widget", quantity=10, unit_price_cents=5000)])
            access_demo.seed_system_of_record(conn)
            conn.execute(directory_accounts.insert().values(
                user_id=DIRECT_USER, display_name="Direct Target", email="direct.target@corp.example",
                department="it", status="active", version=1))
            conn.execute(role_grants.insert().values(user_id=DIRECT_USER, role="admin",
                                                     granted_at=datetime(2025, 1, 1, tzinfo=UTC)))
            conn.execute(staged_invoices.insert(), [
                dict(invoice_id=inv, vendor_id="V-1", invoice_number=inv, po_number="PO-1", currency="USD",
                     amount_cents=100, payable_cents=100, variance_cents=0, due_date=date(2026, 12, 1),
                     intent_id=f"seed:{inv}", staged_at=datetime(2026, 11, 1, tzinfo=UTC))
                for inv in (STAGED_OK, STAGED_BOOL)])
            conn.execute(adv_customers.insert(), [dict(customer_id="C-1", name="Globex"),
                                                  dict(customer_id="C-2", name="Initech")])
        controls.set_kill_switch(db, on=True, actor="adversarial-suite", workflow=KS_WORKFLOW,
                                 reason="adversarial suite: this workflow is switched off")
        controls.set_kill_switch(db, on=True, actor="adversarial-suite", tool=KS_TOOL,
                                 reason="adversarial suite: this tool is switched off")
        invoice, ticket, access = InvoiceMatching(), TicketIntake(), AccessOffboarding()
        adv_reg = adv_registry()
        with db.connect() as conn:
            baseline = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                        for t in (scheduled_payments, staged_invoices, tickets, ticket_messages)}
        yield Env(
            project=project, db=db,
            packs={"adv": adv_policy(), "adv_ks": adv_policy(KS_WORKFLOW), "invoice": invoice.policy,
                   "ticket": ticket.policy, "access": access.policy},
            registries={"adv": adv_reg, "adv_ks": adv_reg, "invoice": observed_registry(invoice.tools()),
                        "ticket": observed_registry(ticket.tools()), "access": observed_registry(access.tools())},
            workflows={"invoice": invoice, "ticket": ticket, "access": access}, baseline=baseline)
    finally:
        if old_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old_home


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    line = summary_line()
    if line:
        terminalreporter.write_line(line)
