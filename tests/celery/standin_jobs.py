"""Stand-ins for a `<workflow>__batch` job, for the Celery harness tests: fan out CHUNKS DynamicOutputs,
record which process ran each chunk into a PostgreSQL table, collect.

The jobs are built by module-level factories, not defined at module level: `dg.reconstructable` stores
a pointer to the factory, and every process (the run worker that orchestrates, each Celery worker that
runs a step) calls it again, so each builds the job with `batch_executor()` reading its own
environment."""

import os
import socket
import time

import dagster as dg
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select

from agent_pipelines.framework.executors import batch_executor

CHUNKS = 4
VICTIM = 0  # the chunk whose first attempt waits to have its worker killed (standin_crash_job)
KILL_WAIT_S = 60

metadata = MetaData()
# No unique key: a chunk run twice must show up as two rows, not as an error.
chunk_events = Table(
    "celery_chunk_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chunk", Integer, nullable=False),
    Column("event", String(10), nullable=False),  # start | done
    Column("pid", Integer, nullable=False),
    Column("node", String(200), nullable=False),
)


class RecordConfig(dg.Config):
    db_url: str


def worker_node() -> str:
    """The Celery node name (`w0-…@host`) when the step runs in a Celery task, else the host name."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    return getattr(request, "hostname", None) or socket.gethostname()


def _record(db_url: str, chunk: int, event: str) -> int:
    """Insert one event; return how many `start` events the chunk has now."""
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(chunk_events.insert().values(chunk=chunk, event=event, pid=os.getpid(), node=worker_node()))
            return len(conn.execute(select(chunk_events.c.id).where(chunk_events.c.chunk == chunk,
                                                                    chunk_events.c.event == "start")).all())
    finally:
        engine.dispose()


@dg.op(out=dg.DynamicOut(int))
def split_batch():  # type: ignore[no-untyped-def]
    for chunk in range(CHUNKS):
        yield dg.DynamicOutput(chunk, mapping_key=f"chunk_{chunk}")


@dg.op
def record_chunk(config: RecordConfig, chunk: int) -> int:
    _record(config.db_url, chunk, "start")
    _record(config.db_url, chunk, "done")
    return chunk


@dg.op
def record_chunk_or_wait_to_die(config: RecordConfig, chunk: int) -> int:
    """The first attempt at VICTIM waits for the test to SIGKILL its worker (bounded: an attempt that is
    never killed fails the run); any later attempt, on another worker, just runs."""
    starts = _record(config.db_url, chunk, "start")
    if chunk == VICTIM and starts == 1:
        deadline = time.monotonic() + KILL_WAIT_S
        while time.monotonic() < deadline:
            time.sleep(0.2)
        raise TimeoutError(f"chunk {chunk}: the test did not kill this worker within {KILL_WAIT_S}s")
    _record(config.db_url, chunk, "done")
    return chunk


@dg.op
def collect_chunks(chunks: list[int]) -> int:
    return len(chunks)


def standin_batch_job() -> dg.JobDefinition:
    @dg.job(name="standin__batch", executor_def=batch_executor())
    def standin__batch() -> None:
        collect_chunks(split_batch().map(record_chunk).collect())

    return standin__batch


def standin_crash_job() -> dg.JobDefinition:
    @dg.job(name="standin__batch_crash", executor_def=batch_executor())
    def standin__batch_crash() -> None:
        collect_chunks(split_batch().map(record_chunk_or_wait_to_die).collect())

    return standin__batch_crash


def run_config(db_url: str, op: str = "record_chunk") -> dict[str, object]:
    return {"ops": {op: {"config": {"db_url": db_url}}}}


def create_table(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def events(db_url: str) -> list[tuple[int, str, int, str]]:
    """(chunk, event, pid, node) rows, in insertion order."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            stmt = select(chunk_events.c.chunk, chunk_events.c.event, chunk_events.c.pid, chunk_events.c.node)
            return [tuple(r) for r in conn.execute(stmt.order_by(chunk_events.c.id))]  # type: ignore[misc]
    finally:
        engine.dispose()
