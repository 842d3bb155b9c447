"""`agent-pipelines bench`: a benchmark that prints figures (see agent_pipelines/bench.py), never a test."""

import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

PG_ADMIN = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
WARM_UP = 5  # intents run first, untimed: Great Expectations' import and the first run's setup


@contextmanager
def _pg_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the admin URL's server, dropped afterwards."""
    from sqlalchemy import create_engine, text

    name = f"ap_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def _fresh_project(backend: str, pg_admin: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    from agent_pipelines.project import REPO_ROOT, Project
    from agent_pipelines.settings import Settings

    with tempfile.TemporaryDirectory(prefix="ap-bench-") as tmp:
        state = Path(tmp) / "state"
        home = state / "dagster"
        home.mkdir(parents=True)
        os.environ["DAGSTER_HOME"] = str(home)
        if backend == "sqlite":
            settings = Settings.from_env(state, env=dict(env or {}))
            (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
            project = Project(settings)
            project.prepare()
            yield project
            return
        with _pg_database(pg_admin) as db_url, _pg_database(pg_admin) as dagster_url:
            os.environ["DAGSTER_PG_URL"] = dagster_url
            (home / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "dagster.postgres.yaml").read_text())
            project = Project(Settings.from_env(state, env={**(env or {}), "AGENT_PIPELINES_DB_URL": db_url}))
            project.prepare()
            try:
                yield project
            finally:
                project.instance.dispose()
                project.db.dispose()


def _run_batches(project: Any, ids: list[str], size: int) -> list[bool]:
    from agent_pipelines.framework.batch import batch_run_config
    from agent_pipelines.runner import execute
    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

    wf = InvoiceMatching()
    job = project.definitions.get_job_def(f"{wf.name}__batch")
    return [execute(job, project.instance, batch_run_config(wf, ids[i:i + size], size), {}).success
            for i in range(0, len(ids), size)]


def batch_mode(project: Any, n: int, size: int) -> dict[str, Any]:
    from agent_pipelines import bench
    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

    wf = InvoiceMatching()
    docs = bench.intakes(n + WARM_UP)
    with project.db.begin() as conn:
        bench.seed(conn, n + WARM_UP)
    ids = bench.register(project.db, wf, docs)
    _run_batches(project, ids[:WARM_UP], size)
    started = time.perf_counter()
    ok = _run_batches(project, ids[WARM_UP:], size)
    seconds = time.perf_counter() - started
    states = bench.settled_counts(project.db, wf.name)
    floor_s = bench.floor(project.db, docs[WARM_UP:])
    return bench.summary(n, seconds, floor_s, bench.duplicate_writes(project.db, wf), runs=len(ok),
                         failed_runs=ok.count(False), states=states)


def flood_mode(project: Any, n: int) -> dict[str, Any]:
    """N files at once into the inbox; tick until every intent is settled (sensor, batching, runs)."""
    from agent_pipelines import bench
    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

    wf = InvoiceMatching()
    docs = bench.intakes(n + WARM_UP)
    with project.db.begin() as conn:
        bench.seed(conn, n + WARM_UP)
    inbox = project.settings.invoice_inbox
    inbox.mkdir(parents=True, exist_ok=True)
    bench.write_files(inbox, docs[:WARM_UP])
    while any(t.runs for t in project.tick()):
        pass
    bench.write_files(inbox, docs[WARM_UP:])
    started = time.perf_counter()
    runs = failed = 0
    while True:
        ticks = project.tick()
        done = [r for t in ticks for r in t.runs]
        runs += len(done)
        failed += sum(not r.success for r in done)
        if not done:
            break
    seconds = time.perf_counter() - started
    states = bench.settled_counts(project.db, wf.name)
    return bench.summary(n, seconds, None, bench.duplicate_writes(project.db, wf), runs=runs, failed_runs=failed,
                         states=states)


def llm_mode(backend: str, pg_admin: str, n: int, concurrency: int, latency_s: float) -> dict[str, Any]:
    """Proposals per second through the batch propose step, against a local endpoint that answers after
    `latency_s` with up to `concurrency` calls in flight: the target is 0.9 x concurrency / latency."""
    import dagster as dg

    from agent_pipelines import bench
    from agent_pipelines.bench_llm import LatencyLLM, serve
    from agent_pipelines.framework.batch import batch_run_config
    from agent_pipelines.runner import execute
    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

    wf = InvoiceMatching()
    with serve(LatencyLLM(latency_s=latency_s, capacity=concurrency)) as llm:
        env = {"AGENT_PIPELINES_LLM_PROVIDER": "openai", "AGENT_PIPELINES_LLM_BASE_URL": llm.base_url,
               "AGENT_PIPELINES_LLM_MODEL": "bench-model", "AGENT_PIPELINES_LLM_API_KEY": "unused",
               "AGENT_PIPELINES_LLM_CONCURRENCY": str(concurrency)}
        with _fresh_project(backend, pg_admin, env) as project:
            docs = bench.intakes(n)
            with project.db.begin() as conn:
                bench.seed(conn, n)
            ids = bench.register(project.db, wf, docs)
            job = project.definitions.get_job_def(f"{wf.name}__batch")
            result = execute(job, project.instance, batch_run_config(wf, ids, n), {})
            stamps = {}
            for entry in project.instance.all_logs(result.run_id):
                ev = entry.dagster_event
                if ev is not None and (ev.step_key or "").startswith(f"{wf.name}__batch_propose"):
                    if ev.event_type in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS):
                        stamps[ev.event_type] = entry.timestamp
            seconds = stamps[dg.DagsterEventType.STEP_SUCCESS] - stamps[dg.DagsterEventType.STEP_START]
            states = bench.settled_counts(project.db, wf.name)
            dups = bench.duplicate_writes(project.db, wf)
    per_s = n / seconds
    target = 0.9 * concurrency / latency_s
    return {"n": n, "concurrency": concurrency, "latency_s": latency_s, "proposals_per_s": round(per_s, 2),
            "target_per_s": round(target, 2), "ideal_per_s": round(concurrency / latency_s, 2),
            "max_in_flight": llm.max_in_flight, "served": llm.served, "duplicate_writes": dups, "states": states,
            "met": per_s >= target}


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_cmd(n: Annotated[int, typer.Option("--n", help="intents")] = 1000,
                  backend: Annotated[str, typer.Option("--backend", help="sqlite | postgres")] = "sqlite",
                  mode: Annotated[str, typer.Option("--mode", help="batch | flood | llm")] = "batch",
                  concurrency: Annotated[int, typer.Option("--concurrency", help="llm: C calls in flight")] = 8,
                  latency: Annotated[float, typer.Option("--latency", help="llm: the endpoint's latency L, s")] = 0.5,
                  batch: Annotated[int, typer.Option("--batch", help="intents per batch run")] = 500,
                  pg_admin_url: Annotated[str, typer.Option("--pg-admin-url")] = PG_ADMIN,
                  as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
        """Measure the batch path against a plain-Python floor (batch), or a flood of files (flood).
        For the daemon's file -> write latency of a trickle, see scripts/bench_latency.py."""
        if backend not in ("sqlite", "postgres") or mode not in ("batch", "flood", "llm"):
            raise typer.BadParameter("--backend sqlite|postgres, --mode batch|flood|llm")
        if mode == "llm":
            res = llm_mode(backend, pg_admin_url, n, concurrency, latency)
            if as_json:
                sys.stdout.write(json.dumps({"mode": mode, "backend": backend, **res}, sort_keys=True) + "\n")
            else:
                typer.echo(f"bench llm {backend}: n={n} C={concurrency} L={latency}s "
                           f"proposals_per_s={res['proposals_per_s']} target(0.9*C/L)={res['target_per_s']} "
                           f"max_in_flight={res['max_in_flight']} duplicate_writes={res['duplicate_writes']} "
                           f"states={res['states']}")
            return
        with _fresh_project(backend, pg_admin_url) as project:
            out = batch_mode(project, n, batch) if mode == "batch" else flood_mode(project, n)
        out = {"mode": mode, "backend": backend, **out}
        if as_json:
            sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
            return
        floor = (f" floor={out['floor_ms_per_intent']}ms ratio={out['ratio']}x"
                 if out["floor_ms_per_intent"] is not None else "")
        typer.echo(f"bench {mode} {backend}: n={n} ms_per_intent={out['ms_per_intent']}{floor} "
                   f"intents_per_min={out['intents_per_min']} peak_rss_mb={out['peak_rss_mb']} "
                   f"duplicate_writes={out['duplicate_writes']} runs={out['runs']} states={out['states']}")
