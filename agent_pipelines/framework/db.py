"""Engine construction for our database (SQLite by default, PostgreSQL by URL) and migrations."""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from tenacity import Retrying, before_sleep_log, retry_if_exception, stop_after_delay, wait_exponential_jitter

T = TypeVar("T")
log = logging.getLogger(__name__)

# Infrastructure errors that go away by themselves: the server restarting or refusing connections, a
# lock timeout, a full disk that an operator frees. Anything else (a constraint, a bad statement) is a
# bug or a business outcome, and retrying it would only hide it.
_TRANSIENT_TEXT = ("connection refused", "shutting down", "starting up", "server closed the connection",
                   "terminating connection", "could not connect", "connection reset", "connection already closed",
                   "ssl connection has been closed", "lock timeout", "canceling statement due to lock timeout",
                   "deadlock detected", "database is locked", "database or disk is full", "disk i/o error",
                   "no space left on device", "could not serialize access", "the database system is in recovery")
RETRY_WINDOW_S = 30.0  # a PostgreSQL restart takes a few seconds; longer outages are the sweeper's


def is_transient(exc: BaseException) -> bool:
    """True for a database error that a later attempt may not see (see _TRANSIENT_TEXT)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (OperationalError, DBAPIError)):
        text = str(exc).lower()
        return any(t in text for t in _TRANSIENT_TEXT)
    return isinstance(exc, OSError) and "no space left" in str(exc).lower()


def retrying(window_s: float = RETRY_WINDOW_S) -> Retrying:
    return Retrying(retry=retry_if_exception(is_transient), stop=stop_after_delay(window_s),
                    wait=wait_exponential_jitter(initial=0.1, max=2.0), reraise=True,
                    before_sleep=before_sleep_log(log, logging.WARNING))

WRITER = "agent_pipelines_writer"  # execution option: this connection's transaction will write

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(ts: datetime) -> datetime:
    """SQLite returns naive timestamps (stored as UTC); PostgreSQL returns aware ones."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def normalize_url(url: str) -> str:
    """SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3, which dagster-postgres does not ship."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


# A connection back in the pool for less than this is handed out again without a ping (below).
FRESH_S = 0.25


def _ping_idle_connections(engine: Engine) -> None:
    """A connection that died with a server restart is replaced, not handed out: SQLAlchemy's own
    pessimistic recipe (a checkout event that pings and raises DisconnectionError, so the pool connects
    afresh), but only for a connection idle for FRESH_S or more. pool_pre_ping pinged on every checkout:
    a round trip per transaction, ~20 per intent on the batch path (issue 11). A restart takes longer
    than FRESH_S, and a connection used during it fails and is invalidated, so no connection that was
    alive before a restart is handed out after it unpinged."""

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        back = record.info.get("checked_in_at")
        if back is not None and time.monotonic() - back < FRESH_S:
            return
        try:
            cur = dbapi_conn.cursor()
            try:
                cur.execute("SELECT 1")
            finally:
                cur.close()
        except Exception as exc:  # noqa: BLE001 - any failure: this connection is gone
            raise DisconnectionError(f"stale connection: {exc}") from exc


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_engine(url, pool_size=5, max_overflow=5)
        _ping_idle_connections(engine)
        return engine
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # Take transaction control away from pysqlite so BEGIN IMMEDIATE below is the one that runs.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers (Database.begin/transaction) serialize at BEGIN instead of failing with "database is
        # locked" at COMMIT. Readers (Database.connect, never committed) take a deferred BEGIN: a
        # snapshot that neither waits for nor blocks a writer in WAL mode.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITER) else "BEGIN")

    return engine


def make_reader(url: str) -> Engine:
    """PostgreSQL's engine for reads (Database.connect): autocommit on a read-only session.

    A read in a transaction costs two round trips more than the read (psycopg2 sends BEGIN, the pool
    sends ROLLBACK), ~0.2 ms each time, and the batch path reads ~11 times an intent (issue 11).
    Under READ COMMITTED every statement of a transaction takes its own snapshot anyway, so a
    multi-statement read sees what it saw before. A write through a reader fails loudly ("cannot
    execute ... in a read-only transaction") instead of being rolled back unnoticed. SQLite reads
    stay on the one engine: its deferred BEGIN costs no round trip."""
    u = make_url(normalize_url(url))
    session = "-c default_transaction_read_only=on"
    options = u.query.get("options")
    u = u.update_query_dict({"options": f"{options} {session}" if options else session})
    engine = create_engine(u, pool_size=5, max_overflow=5, isolation_level="AUTOCOMMIT")
    _ping_idle_connections(engine)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to head with Alembic (idempotent; safe to call on every start)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn, conn.execution_options(**{WRITER: True}).begin():
        if conn.dialect.name == "postgresql":  # two processes starting at once migrate one at a time
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """Our database: framework tables plus the shipped workflows' systems of record."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)  # writers (begin, transaction) and, on SQLite, readers
        self.reader = make_reader(self.url) if self.engine.dialect.name == "postgresql" else self.engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self) -> "Database":
        migrate(self.engine)
        return self

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.execution_options(**{WRITER: True}).begin():
            yield conn

    def transaction(self, fn: Callable[[Connection], T], *, window_s: float = RETRY_WINDOW_S) -> T:
        """Run `fn` in one transaction, again from the start if the database fails transiently (the
        transaction rolled back, so a second attempt sees what the first would have). `fn` must only
        touch the database: it may run more than once."""
        for attempt in retrying(window_s):
            with attempt:
                with self.begin() as conn:
                    return fn(conn)
        raise AssertionError("unreachable: tenacity reraises")

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads only (on PostgreSQL, autocommit on a read-only session: make_reader)."""
        with self.reader.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()
