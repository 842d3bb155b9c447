"""Shared by tests/chaos and scripts/chaos.py: a chaos deployment (state folder, Dagster storage on a
fresh PostgreSQL database, our database where the scenario wants it), a private PostgreSQL cluster that
can be restarted, driver processes, the end-state check and the figures line.

Every process started here runs in its own session and is killed by its id; the private cluster is
stopped and removed by its context manager."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from tests.support import PG_ADMIN_URL, fresh_pg_database, invoice_bytes, wait_until  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("AGENT_PIPELINES_PG_BIN", "/usr/lib/postgresql/15/bin"))
ACTIVE = ("received", "running", "committing", "verifying")


class ChaosError(AssertionError):
    pass


# -- databases -----------------------------------------------------------------------------------------
def free_port(preferred: int) -> int:
    for port in (preferred, *range(preferred + 1, preferred + 50)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise ChaosError(f"no free port near {preferred}")


class PrivateCluster:
    """A PostgreSQL 15 cluster of our own (initdb into a temp dir owned by postgres, its own port and
    unix socket dir), so it can be stopped and started under load without touching the shared one."""

    def __init__(self, port: int = 55432) -> None:
        self.port = free_port(port)
        self.root = Path(tempfile.mkdtemp(prefix="ap_chaos_pg_"))
        self.data, self.sock, self.log = self.root / "data", self.root / "sock", self.root / "postgres.log"
        self.restarts = 0

    def _pg(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", "postgres", "--", str(PG_BIN / argv[0]), *argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ChaosError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stdout}{done.stderr}"
                             f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")
        return done

    def init(self) -> "PrivateCluster":
        self.sock.mkdir()
        shutil.chown(self.root, "postgres", "postgres")
        shutil.chown(self.sock, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.start()
        return self

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections=200 -c shared_buffers=32MB")
        self._pg("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_s: float) -> None:
        """stop -m fast, stay down `down_s` (the outage is the point), start."""
        self.stop("fast")
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_cluster(port: int = 55432) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(port)
    try:
        yield cluster.init()
    finally:
        cluster.destroy()


# -- invoices --------------------------------------------------------------------------------------
def mixed_batch(start: int, n: int) -> list[tuple[str, bytes]]:
    """Mostly clean invoices; every 7th asks for approval, every 11th is unreadable."""
    out = []
    for i in range(start, start + n):
        if i % 11 == 10:
            out.append((f"inv-{i:05d}.txt", b"this is not an invoice \x00\x01 at all"))
        else:
            out.append((f"inv-{i:05d}.json", invoice_bytes(i, po_number(i), hostile=i % 7 == 6)))
    return out


def po_number(i: int) -> str:
    return f"PO-C{i:05d}"


# -- a deployment ------------------------------------------------------------------------------------
@dataclass
class DriverResult:
    rc: int
    report: dict[str, Any]
    log: str
    killed_at: str | None

    @property
    def killed(self) -> bool:
        return self.rc == -signal.SIGKILL


@dataclass
class Deployment:
    state: Path
    db_url: str
    dagster_url: str
    lease_s: float = 3.0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _n: int = 0

    @property
    def home(self) -> Path:
        return self.state / "dagster"

    @property
    def inbox(self) -> Path:
        return self.state / "inbox" / "invoices"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DAGSTER_HOME": str(self.home), "AGENT_PIPELINES_STATE_DIR": str(self.state),
                "AGENT_PIPELINES_DB_URL": self.db_url, "AGENT_PIPELINES_INBOX_SETTLE_SECONDS": "0",
                "AGENT_PIPELINES_LEASE_SECONDS": str(self.lease_s), "AGENT_PIPELINES_RECOVERY_BACKOFF_SECONDS": "0",
                "PYTHONPATH": str(REPO)}

    def prepare(self, n_pos: int) -> "Deployment":
        """Dagster instance on PostgreSQL (schema created here, once), our database migrated, vendor V-1
        and `n_pos` open POs of 1,000.00 with two lines each."""
        from agent_pipelines.framework.runtime import database
        from resources.system_of_record import po_lines, purchase_orders, vendors

        self.home.mkdir(parents=True, exist_ok=True)
        self.inbox.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load((REPO / "deploy" / "dagster.postgres.yaml").read_text())
        config["storage"] = {"postgres": {"postgres_url": self.dagster_url}}
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(config))
        self.instance().dispose()  # creates the Dagster schema before several drivers race to
        pos = [po_number(i) for i in range(n_pos)]
        with database(self.db_url).begin() as conn:
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
        return self

    def instance(self) -> Any:
        import dagster as dg

        return dg.DagsterInstance.from_config(str(self.home))

    def drop(self, name: str, content: bytes) -> None:
        """Atomically (a temp file outside the inbox, then rename)."""
        tmp = self.state / f".{name}.tmp"
        tmp.write_bytes(content)
        tmp.replace(self.inbox / name)

    # drivers
    def start_driver(self, *args: str, tag: str = "driver") -> tuple[subprocess.Popen[bytes], Path]:
        self._n += 1
        base = self.state / f"{tag}-{self._n:03d}"
        log = open(f"{base}.log", "wb")  # noqa: SIM115 - the child owns it; closed below
        cmd = [sys.executable, "-m", "tests.chaos.driver", "--state-dir", str(self.state),
               "--lease", str(self.lease_s), "--report", f"{base}.json", *args]
        try:
            proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            log.close()
        self.procs.append(proc)
        return proc, base

    def finish(self, proc: subprocess.Popen[bytes], base: Path, timeout_s: float) -> DriverResult:
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            raise ChaosError(f"driver {base.name} still running after {timeout_s:.0f}s:\n"
                             f"{tail(Path(f'{base}.log'))}") from None
        self.procs.remove(proc)
        report_path, marker = Path(f"{base}.json"), Path(f"{base}.json.killed")
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        return DriverResult(rc=rc, report=report, log=tail(Path(f"{base}.log")),
                            killed_at=marker.read_text().strip() if marker.exists() else None)

    def run_driver(self, *args: str, timeout_s: float = 180, tag: str = "driver") -> DriverResult:
        proc, base = self.start_driver(*args, tag=tag)
        return self.finish(proc, base, timeout_s)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        if proc in self.procs:
            self.procs.remove(proc)

    def kill_all(self) -> None:
        for proc in list(self.procs):
            self.kill(proc)

    # the end state
    def end_state(self) -> "EndState":
        from agent_pipelines.framework.runtime import database
        from agent_pipelines.framework.tables import approval_requests, inbox_files, intents, writes
        from agent_pipelines.project import Project
        from agent_pipelines.settings import Settings

        settings = Settings.from_env(self.state, env={"AGENT_PIPELINES_DB_URL": self.db_url,
                                                      "AGENT_PIPELINES_INVOICE_INBOX": str(self.inbox)})
        settings = settings.model_copy(update={"lease_seconds": self.lease_s})
        status = Project(settings).status()
        db = database(self.db_url)
        with db.connect() as conn:
            registered = dict(conn.execute(select(inbox_files.c.name, intents.c.state).join(
                intents, intents.c.intent_id == inbox_files.c.intent_id)).all())
            orphans = conn.execute(select(func.count()).select_from(inbox_files).outerjoin(
                intents, intents.c.intent_id == inbox_files.c.intent_id).where(intents.c.intent_id.is_(None))).scalar_one()
            committers = conn.execute(select(writes.c.intent_id, func.count(func.distinct(writes.c.run_id)))
                                      .where(writes.c.status == "committed").group_by(writes.c.intent_id)).all()
            pending_done = conn.execute(select(func.count()).select_from(approval_requests).join(
                intents, intents.c.intent_id == approval_requests.c.intent_id).where(
                approval_requests.c.status == "pending", intents.c.state == "completed")).scalar_one()
            multi_approvals = conn.execute(select(approval_requests.c.intent_id).group_by(
                approval_requests.c.intent_id).having(func.count() > 1)).scalars().all()
        files = sorted(p.name for p in self.inbox.iterdir() if p.is_file() and not p.name.startswith("."))
        return EndState(states=status.intents, writes=status.writes, stranded=status.stranded,
                        partial_commits=status.partial_commits, duplicate_writes=status.duplicate_writes,
                        files=len(files), missing_files=[f for f in files if f not in registered],
                        orphan_inbox_rows=orphans,
                        multi_run_commits=sorted(i for i, n in committers if n > 1),
                        pending_approvals_of_completed=pending_done, multi_approvals=sorted(multi_approvals))


def tail(path: Path, n: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


@dataclass
class EndState:
    states: dict[str, int]
    writes: int
    stranded: int
    partial_commits: int
    duplicate_writes: int
    files: int
    missing_files: list[str]
    orphan_inbox_rows: int
    multi_run_commits: list[str]
    pending_approvals_of_completed: int
    multi_approvals: list[str]

    @property
    def intents(self) -> int:
        return sum(self.states.values())

    @property
    def completed(self) -> int:
        return self.states.get("completed", 0)

    def problems(self) -> list[str]:
        out = []
        if self.stranded:
            out.append(f"stranded={self.stranded}")
        if self.partial_commits:
            out.append(f"partial_commits={self.partial_commits}")
        if self.duplicate_writes:
            out.append(f"duplicate_writes={self.duplicate_writes}")
        left = {s: n for s, n in self.states.items() if s in ACTIVE}
        if left:
            out.append(f"intents left in {left}")
        if self.missing_files:
            out.append(f"{len(self.missing_files)} dropped file(s) without an intent: {self.missing_files[:5]}")
        if self.orphan_inbox_rows:
            out.append(f"{self.orphan_inbox_rows} inbox_files row(s) without their intent")
        if self.pending_approvals_of_completed:
            out.append(f"{self.pending_approvals_of_completed} pending approval(s) of completed intents")
        if self.multi_approvals:
            out.append(f"{len(self.multi_approvals)} intent(s) asked for approval more than once")
        return out

    def check(self, what: str) -> None:
        if self.problems():
            raise ChaosError(f"{what}: {'; '.join(self.problems())} (states {self.states})")


@dataclass
class Figures:
    kills: int = 0
    restarts: int = 0
    faults: int = 0
    intents: int = 0
    completed: int = 0
    stranded: int = 0
    partial_commits: int = 0
    duplicate_writes: int = 0
    states: dict[str, int] = field(default_factory=dict)
    scenarios: list[str] = field(default_factory=list)

    def add(self, end: EndState, scenario: str) -> None:
        self.intents += end.intents
        self.completed += end.completed
        self.stranded += end.stranded
        self.partial_commits += end.partial_commits
        self.duplicate_writes += end.duplicate_writes
        for s, n in end.states.items():
            self.states[s] = self.states.get(s, 0) + n
        self.scenarios.append(scenario)

    def line(self) -> str:
        others = " ".join(f"{s}={n}" for s, n in sorted(self.states.items()) if s != "completed")
        return (f"chaos: kills={self.kills} restarts={self.restarts} faults={self.faults} intents={self.intents} "
                f"completed={self.completed} stranded={self.stranded} partial_commits={self.partial_commits} "
                f"duplicate_writes={self.duplicate_writes}" + (f" ({others})" if others else ""))


def fault_count(report: dict[str, Any]) -> int:
    return sum((report.get("faults") or {}).values())


# -- scenarios (the tests and scripts/chaos.py run these with different sizes) ---------------------------
@contextmanager
def deployment(state: Path, db_url: str, n_pos: int, lease_s: float = 3.0) -> Iterator[Deployment]:
    """A deployment whose Dagster storage is a fresh database on the shared server; our database is
    `db_url` (shared server, private cluster or SQLite). Every driver is killed on exit."""
    from agent_pipelines.framework.runtime import database

    with fresh_pg_database("ap_chaos_dg") as dagster_url:
        d = Deployment(state=state, db_url=db_url, dagster_url=dagster_url, lease_s=lease_s)
        try:
            yield d.prepare(n_pos)
        finally:
            d.kill_all()
            database(db_url).dispose()


def scenario_kills(d: Deployment, figures: Figures, points: list[str], per_point: int, *,
                   first: int = 0, settle_s: float = 240,
                   after_kills: Callable[[EndState], None] | None = None) -> EndState:
    """One new clean invoice per kill: a driver ticks, reaches the point and is SIGKILLed. Then a
    normal driver (kill disarmed) ticks until the sweeper has finished every intent. Each driver warms
    up (imports, definitions) while its predecessor runs and starts ticking when its gate opens.
    `after_kills` sees the state the kills left, before the recovery."""
    plan = [p for _ in range(per_point) for p in points]

    def start(args: list[str], tag: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
        gate = d.state / f"gate-{uuid.uuid4().hex[:8]}"
        proc, base = d.start_driver(*args, "--gate", str(gate), tag=tag)
        return proc, base, gate

    upcoming = start(["--kill-at", plan[0]], f"kill-{plan[0]}")
    for i, point in enumerate(plan):
        proc, base, gate = upcoming
        n = first + i
        d.drop(f"kill-{n:05d}.json", invoice_bytes(n, po_number(n)))
        gate.touch()
        upcoming = (start(["--kill-at", plan[i + 1]], f"kill-{plan[i + 1]}") if i + 1 < len(plan)
                    else start(["--loop", "--deadline", str(settle_s)], "recover"))
        r = d.finish(proc, base, timeout_s=120)
        if not r.killed:
            raise ChaosError(f"kill at {point}: the driver was not killed (rc {r.rc}):\n{r.log}")
        if not (r.killed_at or "").startswith(point):
            raise ChaosError(f"kill at {point}: killed at {r.killed_at!r}")
        figures.kills += 1
    mid = d.end_state()
    if not any(mid.states.get(s) for s in ACTIVE):
        raise ChaosError(f"after {figures.kills} kills no intent is left unfinished: {mid.states}")
    if after_kills is not None:
        after_kills(mid)
    proc, base, gate = upcoming
    gate.touch()
    r = d.finish(proc, base, timeout_s=settle_s + 60)
    if r.rc != 0 or not r.report.get("settled"):
        raise ChaosError(f"recovery did not settle (rc {r.rc}): {r.report}\n{r.log}")
    end = d.end_state()
    end.check("kills")
    started = [run.run_id for run in _runs_in(d, "STARTED")]
    if started:
        raise ChaosError(f"runs of killed workers still STARTED in Dagster: {started}")
    figures.add(end, "kills")
    return end


def _runs_in(d: Deployment, status: str) -> list[Any]:
    import dagster as dg

    instance = d.instance()
    try:
        return list(instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus[status]])))
    finally:
        instance.dispose()


def scenario_restarts(d: Deployment, cluster: PrivateCluster, figures: Figures, *, files: int, restarts: int,
                      seed: int, settle_s: float = 240) -> EndState:
    """Drivers process batches of `files` while the private cluster holding our database restarts
    `restarts` times (stop -m fast, 1-3 s down, start), each once the batch made progress since the last
    restart. A driver that settles before every restart happened gets a new batch and a successor."""
    from agent_pipelines.framework.runtime import database
    from agent_pipelines.framework.tables import intent_transitions

    rng = random.Random(seed)
    db = database(d.db_url)

    def transitions() -> int:
        with db.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(intent_transitions)).scalar_one())

    done, batch = 0, 0
    step = max(2, (files * 4) // (restarts + 1))
    while done < restarts:
        for name, content in mixed_batch(batch * files, files):
            d.drop(name, content)
        batch += 1
        proc, base = d.start_driver("--loop", "--deadline", str(settle_s), "--poll", "0.3", tag="restarts")
        seen = wait_until("the database", transitions, timeout_s=60, every_s=0.2)
        while done < restarts:
            wait_until(f"progress before restart {done + 1}",
                       lambda t=seen + step: proc.poll() is not None or transitions() >= t, timeout_s=120,
                       every_s=0.1)
            if proc.poll() is not None:
                break
            cluster.restart(down_s=rng.uniform(1.0, 3.0))
            done += 1
            figures.restarts += 1
            seen = wait_until("the database back", transitions, timeout_s=60, every_s=0.2)
        r = d.finish(proc, base, timeout_s=settle_s + 60)
        if r.rc != 0 or not r.report.get("settled"):
            raise ChaosError(f"restarts: the driver did not settle (rc {r.rc}): {r.report}\n{r.log}")
    end = d.end_state()
    end.check("restarts")
    figures.add(end, "restarts")
    return end


def scenario_faults(d: Deployment, figures: Figures, *, files: int, p: float, seed: int,
                    settle_s: float = 300, tool_timeout_s: float = 0.3) -> EndState:
    """Tool faults (429, 503, timeouts) and lost acknowledgements after commit, each at probability p,
    seeded, while a driver processes a batch until settled."""
    for name, content in mixed_batch(0, files):
        d.drop(name, content)
    r = d.run_driver("--loop", "--deadline", str(settle_s), "--tool-fault-p", str(p), "--lost-ack-p", str(p),
                     "--seed", str(seed), "--tool-timeout-s", str(tool_timeout_s), timeout_s=settle_s + 60,
                     tag="faults")
    if r.rc != 0 or not r.report.get("settled"):
        raise ChaosError(f"faults: the driver did not settle (rc {r.rc}): {r.report}\n{r.log}")
    injected = r.report.get("faults") or {}
    if not injected.get("lost_ack") or not any(k.startswith("tool_") for k in injected):
        raise ChaosError(f"faults: too few faults injected to mean anything: {injected}")
    figures.faults += fault_count(r.report)
    end = d.end_state()
    end.check("faults")
    figures.add(end, "faults")
    return end


def scenario_concurrent(d: Deployment, figures: Figures, *, processes: int, files: int, first: int = 0,
                        settle_s: float = 240) -> EndState:
    """`processes` tick processes at once on `files` new files: each intent is committed by exactly one
    run, every other run of it stopped (claimed by another run, or nothing left to do)."""
    import dagster as dg

    for name, content in mixed_batch(first, files):
        d.drop(name, content)
    # all warm, then one gate for all: the ticks really start together
    gate = d.state / "gate-concurrent"
    started = [d.start_driver("--gate", str(gate), tag=f"concurrent-{k}") for k in range(processes)]
    wait_until("every driver ready", lambda: all(Path(f"{base}.json.ready").exists() or proc.poll() is not None
                                                 for proc, base in started), timeout_s=120, every_s=0.1)
    gate.touch()
    results = [d.finish(proc, base, timeout_s=settle_s) for proc, base in started]
    bad = [r for r in results if r.rc != 0]
    if bad:
        raise ChaosError(f"concurrent: {len(bad)} driver(s) failed: {bad[0].log}")
    end = d.end_state()
    if end.states.get("failed"):
        raise ChaosError(f"concurrent: failed intents: {end.states}")
    if end.multi_run_commits:
        raise ChaosError(f"concurrent: ledger rows of one intent from several runs: {end.multi_run_commits[:5]}")
    end.check("concurrent")
    # every run of an intent other than the one that committed it stopped without acting
    from agent_pipelines.framework.runtime import database
    from agent_pipelines.framework.tables import writes

    with database(d.db_url).connect() as conn:
        committer = dict(conn.execute(select(writes.c.intent_id, func.min(writes.c.run_id))
                                      .group_by(writes.c.intent_id)).all())
    instance = d.instance()
    try:
        runs = instance.get_runs(filters=dg.RunsFilter(job_name="invoice_matching"))
        duplicates = stopped = 0
        for run in runs:
            intent_id = run.tags.get("agent_pipelines/intent_id")
            if intent_id not in committer or run.run_id == committer[intent_id]:
                continue
            duplicates += 1
            logs = " | ".join(e.user_message for e in instance.all_logs(run.run_id))
            if "claimed by run" in logs or "nothing to do" in logs:
                stopped += 1
            else:
                raise ChaosError(f"concurrent: run {run.run_id} of {intent_id} neither committed it nor stopped: "
                                 f"{logs[-1500:]}")
    finally:
        instance.dispose()
    figures.add(end, f"concurrent ({duplicates} duplicate runs stopped)")
    return end


@contextmanager
def tmpfs(size: str) -> Iterator[Path | None]:
    """A small tmpfs for the SQLite file, or None when mounting is not permitted here."""
    where = Path(tempfile.mkdtemp(prefix="ap_chaos_tmpfs_"))
    if os.environ.get("AGENT_PIPELINES_CHAOS_NO_TMPFS"):  # exercise the max_page_count fallback
        done = subprocess.CompletedProcess([], 1)
    else:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True)
    try:
        yield where if done.returncode == 0 else None
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until the filesystem says ENOSPC; returns the filler file."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    return filler


def scenario_disk_full(state: Path, figures: Figures, *, files: int, full_rounds: int = 1,
                       settle_s: float = 240) -> EndState:
    """Our database is SQLite on a small tmpfs (or, where mounting is refused, SQLite with its page
    count clamped). A driver processes batches while the disk fills up; files dropped meanwhile must be
    registered once there is space again, every intent ends recorded, and no inbox_files row ever
    exists without its intent (the inbox never moves past an unregistered file)."""
    from agent_pipelines.framework.runtime import database
    from agent_pipelines.framework.tables import inbox_files, intents

    with tmpfs("24m") as mnt:
        folder = mnt or (state / "sqlite")
        folder.mkdir(parents=True, exist_ok=True)
        control = state / "disk-full"
        db_url = f"sqlite:///{folder / 'agent_pipelines.sqlite'}"
        with deployment(state, db_url, n_pos=files * (full_rounds + 1)) as d:
            extra = [] if mnt else ["--full-control", str(control)]
            db = database(db_url)
            batches = [mixed_batch(k * files, files) for k in range(full_rounds + 1)]
            for name, content in batches[0]:
                d.drop(name, content)
            proc, base = d.start_driver("--loop", "--deadline", str(settle_s), "--poll", "0.3", *extra, tag="full")

            def intents_n() -> int:
                with db.connect() as conn:
                    return int(conn.execute(select(func.count()).select_from(intents)).scalar_one())

            def invariant() -> None:
                with db.connect() as conn:
                    orphans = conn.execute(select(inbox_files.c.name).outerjoin(
                        intents, intents.c.intent_id == inbox_files.c.intent_id)
                        .where(intents.c.intent_id.is_(None))).scalars().all()
                if orphans:
                    raise ChaosError(f"disk full: inbox_files rows without their intent: {orphans}")

            for k in range(1, full_rounds + 1):
                wait_until("some intents before the disk fills", lambda: intents_n() >= 1 or proc.poll() is not None,
                           timeout_s=120, every_s=0.1)
                filler = fill(folder) if mnt else control
                if not mnt:
                    control.write_text("full")
                before = intents_n()
                for name, content in batches[k]:
                    d.drop(name, content)
                log = Path(f"{base}.log")
                wait_until("the driver to hit the full disk",
                           lambda: any(m in log.read_text(errors="replace").lower() for m in ("disk is full", "disk i/o error"))
                           or proc.poll() is not None,
                           timeout_s=60, every_s=0.1)
                invariant()
                figures.faults += 1
                filler.unlink()
                wait_until("files dropped on a full disk registered", lambda b=before: intents_n() > b,
                           timeout_s=120, every_s=0.2)
            r = d.finish(proc, base, timeout_s=settle_s + 60)
            if r.rc != 0 or not r.report.get("settled"):
                raise ChaosError(f"disk full: the driver did not settle (rc {r.rc}): {r.report}\n{r.log}")
            invariant()
            end = d.end_state()
            if end.files != files * (full_rounds + 1):
                raise ChaosError(f"disk full: {end.files} files in the inbox, expected {files * (full_rounds + 1)}")
            end.check("disk full")
            figures.add(end, "disk full" + ("" if mnt else " (max_page_count)"))
            return end
