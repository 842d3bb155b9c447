"""A Celery deployment on this box for the batch executor's tests: the broker checked, Dagster storage on
a fresh PostgreSQL database (deploy/dagster.celery.yaml), N workers started as deploy/README.md says
(`dagster-celery worker start -y deploy/celery.worker.yaml`) on a queue of their own, waited for by
ping. Every worker runs in its own session (process group) and is killed by that group's id on exit;
the queue is purged and deleted.

The queue name is new for every cluster, so a stray worker of another run (or a developer's own
`dagster-celery worker start` on the default `dagster` queue) never takes this run's tasks, and ours
never take theirs."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import dagster as dg
import pytest

from agent_pipelines.framework import executors
from tests.support import delete_queue, fresh_pg_database

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CELERY_YAML = REPO / "deploy" / "dagster.celery.yaml"
WORKER_YAML = REPO / "deploy" / "celery.worker.yaml"


def broker_reachable(url: str, timeout_s: float = 2.0) -> str | None:
    """None if a TCP connection to the broker opens, else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc}"


def require_broker(url: str) -> None:
    """CI must have the broker (.ci/run starts RabbitMQ): fail there; a developer without one skips."""
    problem = broker_reachable(url)
    if problem is None:
        return
    message = f"Celery broker {url} is unreachable ({problem}); start RabbitMQ (`rabbitmq-server -detached`)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Cluster:
    """One deployment: DAGSTER_HOME, Dagster's database, the queue and the worker processes."""

    home: Path
    dagster_pg_url: str
    broker: str
    backend: str
    queue: str
    pythonpath: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, IO[bytes]] = field(default_factory=dict)
    log_paths: dict[str, Path] = field(default_factory=dict)  # kept after stop(), for failure messages

    @property
    def env(self) -> dict[str, str]:
        """What the test process and every worker share: the instance, this checkout, the executor."""
        return {"DAGSTER_HOME": str(self.home), "DAGSTER_PG_URL": self.dagster_pg_url,
                "DAGSTER_ARTIFACT_DIR": str(self.home),
                # workers rebuild the job from its code pointer: they must import this checkout first
                "PYTHONPATH": self.pythonpath,
                executors.EXECUTOR_ENV: "celery", executors.BROKER_ENV: self.broker,
                executors.BACKEND_ENV: self.backend, executors.QUEUE_ENV: self.queue}

    def node_name(self, i: int) -> str:
        # the name dagster-celery gives the node (`<name>@%h`, %h being this host name): what we ping
        return f"w{i}-{self.queue}@{socket.gethostname()}"

    @property
    def node_names(self) -> list[str]:
        """Every worker this cluster started, killed ones included."""
        return sorted(self.log_paths)

    def start_worker(self, i: int) -> None:
        """The documented command (deploy/README.md): `dagster-celery worker start` with the worker config
        of deploy/celery.worker.yaml; it writes that config where Celery loads it (under DAGSTER_HOME) and
        runs `celery -A dagster_celery.app worker` as its child, in the same process group."""
        node = self.node_name(i)
        self.log_paths[node] = self.home / f"worker{i}.log"
        log = open(self.log_paths[node], "ab")  # noqa: SIM115 - closed in stop()
        argv = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(WORKER_YAML),
                "-q", self.queue, "-n", node.split("@", 1)[0], "--",
                "--concurrency", "1",
                # no gossip/mingle: our workers need nothing from other nodes, and startup is quicker
                "--without-gossip", "--without-mingle"]
        self.logs[node] = log
        # dagster-celery finds `celery` on PATH: this interpreter's
        env = {**os.environ, **self.env, "PATH": os.pathsep.join((str(BIN), os.environ.get("PATH", "")))}
        self.procs[node] = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill_worker_running(self, pid: int) -> str:
        """SIGKILL the whole worker (its process group) whose pool process `pid` is: a lost machine."""
        pgid = os.getpgid(pid)
        node = next(n for n, proc in self.procs.items() if proc.pid == pgid)
        os.killpg(pgid, signal.SIGKILL)
        self.procs.pop(node).wait(timeout=10)
        self.logs.pop(node).close()
        return node

    def control_app(self):  # type: ignore[no-untyped-def]
        from celery import Celery

        return Celery("agent_pipelines_test_control", broker=self.broker, backend=self.backend)

    def wait_for_workers(self, timeout_s: float = 60) -> None:
        """Poll until every worker answers a ping (so it consumes from the broker); a worker that exited
        ends the wait at once with the logs."""
        app = self.control_app()
        deadline = time.monotonic() + timeout_s
        answered: set[str] = set()
        try:
            while not answered >= set(self.procs):
                dead = {node: proc.returncode for node, proc in self.procs.items() if proc.poll() is not None}
                if dead:
                    raise RuntimeError(f"celery workers exited: {dead}\n{self.log_tails()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"celery workers did not answer a ping within {timeout_s:.0f}s (answered: "
                                       f"{sorted(answered)})\n{self.log_tails()}")
                try:  # waits up to 1 s for the replies: this is the polling interval
                    replies = app.control.ping(destination=sorted(self.procs), timeout=1.0, limit=len(self.procs))
                    answered |= {name for reply in replies for name in reply}
                except OSError:  # broker connection hiccup: the deadline bounds the retries
                    time.sleep(0.5)
        finally:
            app.close()

    def stop(self, node: str, grace_s: float = 10) -> None:
        """SIGTERM the worker's process group (the worker and its pool children), SIGKILL what is left."""
        proc = self.procs.pop(node)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace_s)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # pool children may outlive their parent: the group gets a last SIGKILL either way
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        self.logs.pop(node).close()

    def delete_queue(self) -> None:
        """Drop whatever is left on our queue (a failed run's unstarted steps), the queue and its exchange."""
        delete_queue(self.broker, self.queue)

    def log_tails(self, n: int = 40) -> str:
        out = []
        for node, path in self.log_paths.items():
            lines = path.read_text(errors="replace").splitlines()[-n:] if path.exists() else []
            out.append(f"--- {node} ({path.name}) ---\n" + "\n".join(lines))
        return "\n".join(out)


@contextmanager
def celery_cluster(tmp: Path, workers: int = 2) -> Iterator[Cluster]:
    """Broker checked, fresh Dagster storage, `workers` Celery workers answering pings. The test process
    gets the same environment (it orchestrates the run); it is restored on exit."""
    broker = os.environ.get(executors.BROKER_ENV) or executors.DEFAULT_BROKER
    backend = os.environ.get(executors.BACKEND_ENV) or executors.DEFAULT_BACKEND
    require_broker(broker)
    saved = dict(os.environ)
    with fresh_pg_database("ap_celery_dg") as dg_url:
        home = tmp / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text(CELERY_YAML.read_text())
        cluster = Cluster(home=home, dagster_pg_url=dg_url, broker=broker, backend=backend,
                          queue=f"ap_test_{os.getpid()}_{uuid.uuid4().hex[:8]}",
                          pythonpath=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
        try:
            os.environ.update(cluster.env)
            # Dagster's PostgreSQL storages create their schema when an instance first opens them; two
            # workers starting at once on a fresh database race to create it ("type runs already
            # exists"), so the test process creates it before any worker starts.
            with dg.DagsterInstance.get() as instance:
                instance.get_runs_count()
            for i in range(workers):
                cluster.start_worker(i)
            cluster.wait_for_workers()
            yield cluster
        finally:
            for node in list(cluster.procs):
                cluster.stop(node)
            cluster.delete_queue()
            os.environ.clear()
            os.environ.update(saved)
