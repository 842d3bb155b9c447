"""A real Dagster deployment on this box, for the daemon test and scripts/bench_latency.py: Dagster
storage and our database on fresh PostgreSQL databases, a fresh state folder, `dagster-daemon run`
(and optionally `dagster-webserver`, and warm run workers for deploy/dagster.warm.yaml) on
workspace.yaml, and helpers to drop invoices and wait for their intents. Every process started here
runs in its own session and is killed by its id."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy import select

from agent_pipelines.framework import executors
from agent_pipelines.settings import DAEMON_INBOX_WATCH_S, WATCH_ENV
from tests.support import (PG_ADMIN_URL, Hopeless, delete_queue, fresh_pg_database,  # noqa: F401 - re-exported
                           invoice_bytes, wait_until)

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_QUEUE_ENV = "AGENT_PIPELINES_RUN_QUEUE"  # deploy/dagster.warm.yaml: the run launcher's queue ...
RUN_BACKEND_ENV = "AGENT_PIPELINES_RUN_BACKEND"  # ... and where its tasks' states are kept


def warm_env() -> dict[str, str]:
    """The environment deploy/dagster.warm.yaml reads: the broker, and a run queue new to this stack (a
    stray worker of another deployment never takes its runs)."""
    return {executors.BROKER_ENV: os.environ.get(executors.BROKER_ENV) or executors.DEFAULT_BROKER,
            RUN_QUEUE_ENV: f"ap-runs-{uuid.uuid4().hex[:8]}"}


def as_epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


@dataclass
class Stack:
    """One deployment: state folder, both databases, the processes it started."""

    state: Path
    dagster_pg_url: str
    db_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, IO[bytes]] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.state / "dagster"

    @property
    def inbox(self) -> Path:
        return self.state / "inbox" / "invoices"

    @property
    def env(self) -> dict[str, str]:
        # the inbox watch `agent-pipelines ui` gives its daemon (settings.DAEMON_INBOX_WATCH_S)
        return {WATCH_ENV: str(DAEMON_INBOX_WATCH_S), **os.environ, "DAGSTER_HOME": str(self.home), "DAGSTER_PG_URL": self.dagster_pg_url,
                "AGENT_PIPELINES_STATE_DIR": str(self.state), "AGENT_PIPELINES_DB_URL": self.db_url,
                # the code location and run workers import this checkout, not another install
                "PYTHONPATH": str(REPO),
                # warm run workers keep their task states in Dagster's database (deploy/dagster.warm.yaml)
                **({RUN_BACKEND_ENV: f"db+{self.dagster_pg_url}"} if RUN_QUEUE_ENV in self.extra_env else {}),
                **self.extra_env}

    def prepare(self, dagster_yaml: Path, n_pos: int) -> None:
        """Instance config, migrated database, vendor V-1 and `n_pos` open POs PO-B0001.. of 1,000.00."""
        from agent_pipelines.project import Project
        from agent_pipelines.settings import Settings
        from resources.system_of_record import po_lines, purchase_orders, vendors

        self.home.mkdir(parents=True, exist_ok=True)
        self.inbox.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(dagster_yaml.read_text())
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("DAGSTER_", "AGENT_PIPELINES_"))})
        project = Project(Settings.from_env(self.state))
        project.prepare()
        # Dagster's PostgreSQL storages create their schema when an instance first opens them; processes
        # starting at once on a fresh database (two warm run workers, the daemon) race to create it ("type
        # snapshots already exists"), so this process creates it before any of them starts (as
        # tests/celery/harness.py does).
        project.instance.get_runs_count()
        project.instance.event_log_storage  # noqa: B018 - opening it creates its tables
        project.instance.all_instigator_state()
        pos = [f"PO-B{i:04d}" for i in range(n_pos)]
        with project.db.begin() as conn:
            conn.execute(vendors.insert(), [dict(vendor_id="V-1", name="Acme Supply", status="active", currency="USD",
                                                 payment_account="DE89370400440532013000", payment_terms_days=30)])
            conn.execute(purchase_orders.insert(), [dict(po_number=po, vendor_id="V-1", status="open", currency="USD",
                                                         total_cents=100_000, invoiced_cents=0, version=1)
                                                    for po in pos])
            conn.execute(po_lines.insert(), [
                *[dict(po_number=po, line_no=1, sku="BLT-8", description="Hex bolts M8", quantity=100,
                       unit_price_cents=500) for po in pos],
                *[dict(po_number=po, line_no=2, sku="BRK-1", description="Steel bracket", quantity=50,
                       unit_price_cents=1000) for po in pos]])
        self.project = project

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.state / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        proc = subprocess.Popen(argv, cwd=REPO, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_daemon(self) -> subprocess.Popen[bytes]:
        return self.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")])

    def start_webserver(self, port: int) -> subprocess.Popen[bytes]:
        return self.start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                                        "-w", str(REPO / "workspace.yaml")])

    def start_run_workers(self, n: int = 1, concurrency: int = 1, first: int = 0, timeout_s: float = 90) -> None:
        """Warm run workers runworker<first>.. (deploy/dagster.warm.yaml), started as deploy/README.md
        says, and waited for until each logs that it is ready (it consumes from the run queue from then on)."""
        queue = self.env[RUN_QUEUE_ENV]
        names = [f"runworker{i}" for i in range(first, first + n)]
        for i, name in zip(range(first, first + n), names, strict=True):
            self.start(name, [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                              "-y", str(REPO / "deploy" / "celery.runs.yaml"), "-q", queue, "-n", f"runs{i}-{queue}",
                              "-i", "agent_pipelines.warm", "--", "--concurrency", str(concurrency),
                              "--without-gossip", "--without-mingle"],
                       # dagster-celery runs `celery` from PATH: this interpreter's
                       env={"PATH": os.pathsep.join((str(BIN), os.environ.get("PATH", "")))})

        def ready() -> bool:
            dead = [n for n in names if self.procs[n].poll() is not None]
            if dead:
                raise Hopeless(f"run workers exited: {dead}\n" + "\n".join(self.log_tail(n) for n in dead))
            return all(" ready." in self.log_tail(n, 200) for n in names)

        wait_until("the warm run workers", ready, timeout_s)

    def delete_run_queue(self) -> None:
        """Drop the run queue and its exchange (Celery declared both, durable) once the stack is done."""
        if queue := self.env.get(RUN_QUEUE_ENV):
            delete_queue(self.env[executors.BROKER_ENV], queue)

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, grace_s: float = 15) -> None:
        """Signal the process group this harness created (the daemon's code server and run workers
        live in it), then SIGKILL whatever is left after `grace_s`."""
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for s in (sig, signal.SIGKILL):
            try:
                os.killpg(proc.pid, s)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace_s)
                if s == signal.SIGKILL or sig == signal.SIGKILL:
                    break
            except subprocess.TimeoutExpired:
                continue
        try:  # children of a group leader that exited may still be alive: one last SIGKILL
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        self.logs.pop(name).close()

    def kill_daemon(self, keep_group: int | None = None) -> None:
        """A crash: SIGKILL the daemon's process group (daemon, code server, run workers), then any
        process of this deployment that left it (a run worker in its own session), except the process
        group `keep_group` (a webserver that stays up)."""
        self.stop("daemon", sig=signal.SIGKILL)
        for pid in our_processes(self.home):
            if process_group(pid) != keep_group:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def log_tail(self, name: str, n: int = 40) -> str:
        path = self.state / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def drop(self, name: str, content: bytes) -> float:
        """Write atomically (temp name outside the inbox, then rename) and return the drop time."""
        tmp = self.state / f".{name}.tmp"
        tmp.write_bytes(content)
        tmp.replace(self.inbox / name)
        return time.time()

    def intents_by_file(self) -> dict[str, dict[str, object]]:
        """File name -> {intent_id, state, created, completed} from our database."""
        from agent_pipelines.framework.tables import intent_transitions, intents

        done = (select(intent_transitions.c.intent_id, intent_transitions.c.at)
                .where(intent_transitions.c.to_state == "completed").subquery())
        stmt = (select(intents.c.intent_id, intents.c.source_ref, intents.c.state, intents.c.created_at, done.c.at)
                .outerjoin(done, done.c.intent_id == intents.c.intent_id))
        with self.project.db.connect() as conn:
            return {Path(ref).name: {"intent_id": iid, "state": state, "created": as_epoch(created),
                                     "completed": as_epoch(at) if at else None}
                    for iid, ref, state, created, at in conn.execute(stmt)}


def our_processes(home: Path) -> list[int]:
    """Pids whose environment points at this deployment's DAGSTER_HOME: daemon, code server, workers."""
    needle = f"DAGSTER_HOME={home}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:  # gone, or not ours to read
                continue
    return pids


def process_group(pid: int) -> int | None:
    """The process group of `pid` (a run worker's pool process is in its worker's group), None if gone."""
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@contextmanager
def stack(dagster_yaml: Path, state: Path, n_pos: int, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Fresh Dagster storage + our database on PostgreSQL; every started process is killed on exit."""
    saved = dict(os.environ)  # prepare() points this process at the stack too; put it back afterwards
    with fresh_pg_database("ap_daemon_dg") as dg_url, fresh_pg_database("ap_daemon_db") as db_url:
        s = Stack(state=state, dagster_pg_url=dg_url, db_url=db_url, extra_env=extra_env or {})
        try:
            s.prepare(dagster_yaml, n_pos)
            yield s
        finally:
            s.stop_all()
            s.delete_run_queue()
            if hasattr(s, "project"):
                s.project.db.engine.dispose()
                if "instance" in s.project.__dict__:
                    s.project.instance.dispose()
            os.environ.clear()
            os.environ.update(saved)
