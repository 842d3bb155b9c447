"""Test fixtures: a fresh database per test on the selected backend (SQLite file or a new PostgreSQL
database), a Dagster instance on disk, and a small seeded system of record.

Backend: `--backend sqlite|postgres` or AGENT_PIPELINES_TEST_BACKEND. PostgreSQL comes from
AGENT_PIPELINES_TEST_PG_URL (default postgresql+psycopg2://postgres@127.0.0.1:5432/postgres); when it
is selected and unreachable the tests fail, they never skip."""

import functools
import json
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from agent_pipelines.framework.runtime import database
from agent_pipelines.project import Project
from agent_pipelines.settings import Settings
from agent_pipelines.workflows.ticket_intake import demo_data as ticket_demo
from resources.system_of_record import po_lines, purchase_orders, vendors
from tests.support import fresh_pg_database

# Property tests: `ci` (CI=true) runs 2,000 examples per target, derandomized so a CI run is reproducible;
# `dev` 300. HYPOTHESIS_PROFILE picks one explicitly. A test's own @settings may lower max_examples.
hypothesis_settings.register_profile("ci", max_examples=2000, deadline=None, database=None, derandomize=True)
hypothesis_settings.register_profile("dev", max_examples=300, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                                "ci" if os.environ.get("CI") == "true" else "dev"))

PG_URL = os.environ.get("AGENT_PIPELINES_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def pytest_configure(config: pytest.Config) -> None:
    """A pytest a script starts in the background (scripts/test runs two legs side by side) inherits
    SIGINT ignored, and Dagster's in-process execution maps SIGTERM to SIGINT's handler when it ends
    (dagster._utils.interrupts.setup_interrupt_handlers): every process a later test started would then
    ignore SIGTERM and outlive its `terminate()`. Python's own SIGINT handler restores the usual case."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--backend", choices=["sqlite", "postgres"],
                     default=os.environ.get("AGENT_PIPELINES_TEST_BACKEND", "sqlite"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test runs in the legs where the backend can change its outcome (deselected elsewhere, never
    skipped):
    - marked pg_leg (the daemon, the chaos suite, Celery): they start servers and processes on
      PostgreSQL, so they run once, in the PostgreSQL leg;
    - not depending on the `backend` fixture (parsers, redaction, policy packs, property tests of pure
      functions): no database of the selected backend is involved, so they run once, in the SQLite leg.
      `backend_independent` below is the rule; the PostgreSQL leg's header prints how many it left out;
    - marked sqlite_leg: it uses a database, but what it checks cannot depend on which (the demo
      through the model server: the PostgreSQL leg runs the same demo offline), so it runs once too."""
    if config.getoption("--backend") == "postgres":
        out = [i for i in items if backend_independent(i) or i.get_closest_marker("sqlite_leg")]
    else:
        out = [i for i in items if i.get_closest_marker("pg_leg")]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [i for i in items if i not in out]
    config.stash[_DESELECTED] = len(out)


_DESELECTED = pytest.StashKey[int]()


def backend_independent(item: pytest.Item) -> bool:
    """True when the selected backend cannot reach the test: it asks for no fixture that depends on
    `backend` (db_url, project, seeded, ... all do) and is not marked pg_leg or postgres (those open
    PostgreSQL themselves) or every_leg (a module's summary of the cases its leg ran)."""
    if any(item.get_closest_marker(m) for m in ("pg_leg", "postgres", "every_leg")):
        return False
    return "backend" not in getattr(item, "fixturenames", ())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Figures that tests reported (tests.support.SUMMARY), in the summary so CI's log has them."""
    from tests.support import SUMMARY

    for line in SUMMARY:
        terminalreporter.write_line(line)
    left_out = config.stash.get(_DESELECTED, 0)
    if config.getoption("--backend") == "postgres":
        terminalreporter.write_line(f"backend-independent tests left to the SQLite leg: {left_out}")
    else:
        terminalreporter.write_line(f"PostgreSQL-only (pg_leg) tests left to the PostgreSQL leg: {left_out}")


def pytest_report_header(config: pytest.Config) -> str:
    return f"agent_pipelines backend: {config.getoption('--backend')}"


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--backend")


@contextmanager
def fresh_database(backend: str, folder: Path, prefix: str = "ap_test") -> Iterator[str]:
    """A new empty database for one test (or one module): a SQLite file in `folder`, or a PostgreSQL
    database created on the test server and dropped afterwards. PostgreSQL missing fails, never skips."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'agent_pipelines.sqlite'}"
        yield url
        database(url).dispose()
        return
    with ExitStack() as stack:
        try:
            url = stack.enter_context(fresh_pg_database(prefix, PG_URL, template=_migrated_template()))
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"PostgreSQL backend selected but {PG_URL} is not reachable: {exc}")
        yield url
        database(url).dispose()


@functools.cache
def _migrated_template() -> str:
    """A database migrated to head once per test session: each test's database is a copy of it
    (CREATE DATABASE ... TEMPLATE, 0.2-0.6 s) instead of a fresh migration (~0.7-1.5 s on a 2-core box).
    A test's own first use of the database still runs `migrate`, which finds it at head. Dropped at
    the session's end."""
    name = f"ap_template_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    database(url).dispose()  # migrated; no connection may stay open on a template
    return name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _migrated_template.cache_info().currsize:
        admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{_migrated_template()}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def project(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    state = tmp_path / "state"
    settings = Settings.from_env(state, env={"AGENT_PIPELINES_DB_URL": db_url})
    p = Project(settings)
    p.prepare()  # sets DAGSTER_HOME for this test (restored by monkeypatch)
    monkeypatch.setenv("DAGSTER_HOME", str(settings.dagster_home))
    yield p
    if "instance" in p.__dict__:
        p.instance.dispose()


@pytest.fixture
def desk(project: Project) -> Project:
    """The demo support desk: teams, products, 15 requesters, tickets T-1001..T-1007 (T-1006 closed)."""
    with project.db.begin() as conn:
        ticket_demo.seed_system_of_record(conn)
        ticket_demo.seed_system_of_record(conn)  # idempotent
    return project


@pytest.fixture
def seeded(project: Project) -> Project:
    """V-1 (active) with PO-1 (2 lines, 1,000.00), V-2 on hold with PO-2, V-1 also has PO-3."""
    with project.db.begin() as conn:
        conn.execute(vendors.insert(), [
            dict(vendor_id="V-1", name="Acme Supply", status="active", currency="USD",
                 payment_account="DE89370400440532013000", payment_terms_days=30),
            dict(vendor_id="V-2", name="Held Corp", status="on_hold", currency="USD",
                 payment_account="GB33BUKB20201555555555", payment_terms_days=30),
        ])
        conn.execute(purchase_orders.insert(), [
            dict(po_number="PO-1", vendor_id="V-1", status="open", currency="USD", total_cents=100_000,
                 invoiced_cents=0, version=1),
            dict(po_number="PO-2", vendor_id="V-2", status="open", currency="USD", total_cents=50_000,
                 invoiced_cents=0, version=1),
            dict(po_number="PO-3", vendor_id="V-1", status="open", currency="USD", total_cents=9_000_000,
                 invoiced_cents=0, version=1),
        ])
        conn.execute(po_lines.insert(), [
            dict(po_number="PO-1", line_no=1, sku="BLT-8", description="Hex bolts M8", quantity=100,
                 unit_price_cents=500),
            dict(po_number="PO-1", line_no=2, sku="BRK-1", description="Steel bracket", quantity=50,
                 unit_price_cents=1000),
            dict(po_number="PO-2", line_no=1, sku="X", description="Widget", quantity=10, unit_price_cents=5000),
            dict(po_number="PO-3", line_no=1, sku="SRV", description="Server rack", quantity=3,
                 unit_price_cents=3_000_000),
        ])
    return project


def invoice_json(**overrides: object) -> bytes:
    """A clean invoice for PO-1: 100 x 5.00 + 50 x 10.00 = 1,000.00."""
    doc: dict[str, object] = {
        "invoice_number": "INV-100", "vendor": "V-1", "po_number": "PO-1", "currency": "USD",
        "invoice_date": "2026-11-03", "due_date": "2026-12-03", "total": "1,000.00",
        "lines": [{"description": "Hex bolts M8", "sku": "BLT-8", "qty": 100, "unit_price": "5.00"},
                  {"description": "Steel bracket", "sku": "BRK-1", "qty": 50, "unit_price": "10.00"}],
        "memo": "Thanks for your business",
    }
    doc.update(overrides)
    return json.dumps(doc, indent=1).encode()


@pytest.fixture
def drop(seeded: Project):  # type: ignore[no-untyped-def]
    """Write a file into the invoice inbox (distinct mtimes so the cursor order is deterministic)."""
    inbox = seeded.settings.invoice_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 10_000))

    def _drop(name: str, content: bytes) -> Path:
        path = inbox / name
        path.write_bytes(content)
        t = 1_800_000_000 + next(counter)
        os.utime(path, (t, t))
        return path

    return _drop


@pytest.fixture
def faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file that arms tests/faulty.py's injected crashes (write fault names into it)."""
    path = tmp_path / "faults"
    monkeypatch.setenv("AGENT_PIPELINES_TEST_FAULTS", str(path))
    return path
