"""`agent-pipelines evals run`: every shipped workflow's gold cases through the real workflow code
(framework/evals.py), with accuracy, containment, review rate, false approvals and rejections and cost
per successful outcome, per workflow and version. Exits 1 when any case does not match gold."""

import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

OFFLINE = {"AGENT_PIPELINES_LLM_PROVIDER": "offline", "AGENT_PIPELINES_LLM_MODEL": "offline-rules"}


def eval_settings(state_dir: Path, *, live_model: bool, db_url: str | None = None) -> Any:
    """Settings for an eval state: our database is a fresh SQLite file in `state_dir` (or `db_url`, which
    the tests give for PostgreSQL), never the deployment's AGENT_PIPELINES_DB_URL, since the cases seed
    records. The proposer is the offline one unless `live_model`: then the configured provider."""
    from agent_pipelines.settings import Settings

    # Approval requests of gold cases notify nobody: the deployment's notification channels are left out.
    env = {k: v for k, v in os.environ.items() if k != "AGENT_PIPELINES_DB_URL"
           and not k.startswith(("AGENT_PIPELINES_NOTIFY_", "AGENT_PIPELINES_SMTP_"))}
    if db_url:
        env["AGENT_PIPELINES_DB_URL"] = db_url
    if not live_model:
        env.update(OFFLINE)
    return Settings.from_env(state_dir, env=env)


def run_evals(settings: Any, workflows: Sequence[Any], golds: dict[str, Any] | None = None) -> list[Any]:
    """Each workflow's gold cases (its gold file, or `golds[name]`) in one in-process batch run, on an
    ephemeral Dagster instance (an eval leaves no runs in the deployment's Dagster storage), scored; one
    report per workflow."""
    import dagster as dg
    from sqlalchemy import func, select

    from agent_pipelines.framework.evals import run_gold
    from agent_pipelines.framework.gold import gold_of
    from agent_pipelines.framework.jobs import TAG, build_jobs, run_tags
    from agent_pipelines.framework.runtime import database
    from agent_pipelines.framework.tables import intents
    from agent_pipelines.services.local import local_services
    from resources import build_resources

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    db = database(settings.db_url)
    with db.connect() as conn:
        if conn.execute(select(func.count()).select_from(intents)).scalar_one():
            raise ValueError(f"{settings.db_url} already holds intents: evals need a fresh state (omit --state-dir "
                             f"for a temporary one)")
    resources = build_resources(settings)
    model = settings.llm.model
    reports = []
    # The external systems some workflows call (payments, CRM): local stand-ins, unless their URLs are set.
    with local_services(), dg.DagsterInstance.ephemeral() as instance:
        for wf in workflows:
            tags = {k: v for k, v in run_tags(wf, "-", model=model).items() if k != f"{TAG}/intent_id"}

            def execute(job: dg.JobDefinition, run_config: dict, tags: dict[str, str] = tags) -> bool:
                quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the report is the output
                return job.execute_in_process(run_config={**run_config, **quiet}, instance=instance, resources=resources,
                                              tags={**tags, f"{TAG}/shape": "batch", f"{TAG}/evals": "gold"},
                                              raise_on_error=False).success

            gold = (golds or {}).get(wf.name) or gold_of(wf)
            wf.seed_gold_files(settings)
            reports.append(run_gold(wf, gold, db, execute, build_jobs(wf).batch, model))
    return reports


@contextmanager
def _state(state_dir: Path | None) -> Iterator[Path]:
    if state_dir is not None:
        yield state_dir.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="ap-evals-") as tmp:
        yield Path(tmp) / "state"


def _table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="gold-case evals")
    for col in rows[0] if rows else ():
        t.add_column(col, justify="right" if col not in ("workflow", "policy", "model") else "left", no_wrap=True)
    for r in rows:
        t.add_row(*(str(v) for v in r.values()))
    return t


def register(app: typer.Typer) -> None:
    evals_app = typer.Typer(no_args_is_help=True, help="Gold-case evals of the shipped workflows.")
    app.add_typer(evals_app, name="evals")

    @evals_app.command("run")
    def run_cmd(workflow: Annotated[list[str] | None, typer.Option("--workflow", help="only this workflow")] = None,
                model: Annotated[str, typer.Option("--model", help="offline (default) | live: the configured "
                                                   "AGENT_PIPELINES_LLM_* provider")] = "offline",
                state_dir: Annotated[Path | None, typer.Option("--state-dir", help="a fresh state folder "
                                                               "(default: a temporary one)")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
        """Run every gold case through the real workflow (batch job, in process) and score it."""
        from agent_pipelines.framework.evals import mismatch_lines, table_rows
        from agent_pipelines.framework.redaction import redact
        from agent_pipelines.workflows import all_workflows

        if model not in ("offline", "live"):
            raise typer.BadParameter("--model is offline or live")
        known = {wf.name: wf for wf in all_workflows()}
        unknown = sorted(set(workflow or ()) - set(known))
        if unknown:
            raise typer.BadParameter(f"unknown workflow(s) {unknown}; known: {sorted(known)}")
        chosen = [known[n] for n in (workflow or known)]
        with _state(state_dir) as state:
            try:
                reports = run_evals(eval_settings(state, live_model=model == "live"), chosen)
            except ValueError as exc:
                sys.stderr.write(f"evals: {exc}\n")
                raise typer.Exit(2) from exc
        failed = [line for r in reports for line in mismatch_lines(r)]
        if as_json:
            payload = {"reports": [redact(r.model_dump(mode="json"), fields=known[r.workflow].policy.data_handling
                                          .redact_fields) for r in reports],
                       "table": table_rows(reports), "failed_cases": len(failed)}
            sys.stdout.write(json.dumps(payload, default=str, sort_keys=True) + "\n")
        else:
            console = Console(width=None if sys.stdout.isatty() else 240)
            console.print(_table(table_rows(reports)))
            for line in failed:
                console.print(f"FAIL {redact(line)}", markup=False, highlight=False)
            console.print(f"{sum(r.metrics.cases for r in reports)} cases, {len(failed)} failed")
        if failed or not all(r.run_success for r in reports):
            raise typer.Exit(1)
