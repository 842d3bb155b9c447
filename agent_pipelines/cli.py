"""`agent-pipelines`: run the demo, tick the sensors, show status, open the Dagster UI."""

import json
import os
import signal
from contextlib import nullcontext
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agent_pipelines.cli_bench import register as register_bench
from agent_pipelines.cli_common import AsJson, StateDir, console
from agent_pipelines.cli_common import emit as _emit
from agent_pipelines.cli_common import open_project as _open
from agent_pipelines.cli_common import refused as _refused
from agent_pipelines.cli_console import register as register_console
from agent_pipelines.cli_controls import register as register_controls
from agent_pipelines.cli_evals import register as register_evals
from agent_pipelines.cli_llm import register as register_llm
from agent_pipelines.cli_replay import register as register_replay
from agent_pipelines.cli_reviewers import audit_app, reviewers_app
from agent_pipelines.cli_services import register as register_services
from agent_pipelines.cli_trace import log_cli_read, register as register_trace

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def _status_table(status: Any) -> Table:
    t = Table(title="intents by workflow and state")
    t.add_column("workflow")
    t.add_column("state")
    t.add_column("count", justify="right")
    for wf, states in sorted(status.by_workflow.items()):
        for state, n in sorted(states.items()):
            t.add_row(wf, state, str(n))
    return t


def _run_ticks(project: Any, until_idle: bool) -> dict[str, int]:
    totals = {"runs": 0, "failed_runs": 0, "skipped_existing": 0}
    while True:
        ticks = project.tick()
        runs = [r for t in ticks for r in t.runs]
        totals["runs"] += len(runs)
        totals["failed_runs"] += sum(not r.success for r in runs)
        totals["skipped_existing"] += sum(t.skipped_existing for t in ticks)
        if not until_idle or not runs:
            return totals


@app.command()
def demo(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Seed a system of record and an invoice inbox, then run what the sensors request."""
    from agent_pipelines.services.local import local_services

    project = _open(state_dir)
    # The external systems (payments, CRM) the demo's workflows call: local stand-ins in this process
    # unless their URLs are set (agent-pipelines services).
    with local_services(project.settings.state_dir):
        _demo(project, as_json)


def _demo(project: Any, as_json: bool) -> None:
    from agent_pipelines.services.local import seed
    from agent_pipelines.workflows import all_workflows
    from agent_pipelines.workflows.access_offboarding import demo_data as access_demo
    from agent_pipelines.workflows.crm_hygiene import demo_data as crm_demo
    from agent_pipelines.workflows.incident_triage import demo_data as incident_demo
    from agent_pipelines.workflows.invoice_matching import demo_data as invoice_demo
    from agent_pipelines.workflows.refund import demo_data as refund_demo
    from agent_pipelines.workflows.ticket_intake import demo_data as ticket_demo

    with project.db.begin() as conn:
        invoice_demo.seed_system_of_record(conn)
        ticket_demo.seed_system_of_record(conn)
        messages = ticket_demo.seed_inbound_messages(conn)
        access_demo.seed_system_of_record(conn)
        requests = access_demo.seed_access_requests(conn)
        incident_demo.seed_system_of_record(conn)
        alert_rows = incident_demo.seed_alerts(conn)
        refund_requests = refund_demo.seed_refund_requests(conn)
    seed("payments", "/_admin/orders", refund_demo.orders())  # the orders live in the payments service
    files = invoice_demo.write_inbox(project.settings.invoice_inbox)
    incident_demo.write_diagnostics(project.settings.diagnostics_folder)
    crm_demo.seed_crm()  # the CRM service of local_services(): its opportunities and their notes
    if not as_json:
        console.print(f"state: {project.settings.state_dir}  database: {project.db.dialect}  "
                      f"inbox: {len(files)} invoice files  inbound_messages: {messages} new  "
                      f"access_requests: {requests} new  alerts: {alert_rows} new  "
                      f"refund_requests: {refund_requests} new")
    with console.status("evaluating sensors and executing runs...", spinner="dots") if not as_json else nullcontext():
        totals = _run_ticks(project, until_idle=True)
    status = project.status()
    if as_json:
        _emit({**status.model_dump(), **totals, "state_dir": str(project.settings.state_dir)})
        return
    for workflow in (wf.name for wf in all_workflows()):
        t = Table(title=f"{workflow}: one row per intent")
        for col in ("source", "state", "reason"):
            t.add_column(col, overflow="fold")
        for row in project.intents(workflow):
            t.add_row(Path(row["source_ref"]).name, row["state"], (row["reason"] or "")[:110])
        console.print(t)
    console.print(_status_table(status))
    console.print(f"runs executed: {totals['runs']} (failed: {totals['failed_runs']}, already launched: "
                  f"{totals['skipped_existing']})   writes: {status.writes}   "
                  f"duplicate_writes: {status.duplicate_writes}")


@app.command("tick")
def tick_cmd(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Evaluate every sensor once and execute the requested runs in-process (what the daemon does)."""
    from agent_pipelines.services.local import local_services

    project = _open(state_dir)
    with local_services(project.settings.state_dir):  # the external systems' stand-ins, as in `demo`
        ticks = project.tick()
    status = project.status()
    if as_json:
        _emit({**status.model_dump(), "ticks": [t.model_dump() for t in ticks]})
        return
    for t in ticks:
        ok = sum(r.success for r in t.runs)
        console.print(f"{t.sensor}: {t.requested} requested, {len(t.runs)} run ({ok} succeeded), "
                      f"{t.skipped_existing} already launched" + (f"; {t.skip_reason}" if t.skip_reason else ""))
    console.print(f"writes: {status.writes}   duplicate_writes: {status.duplicate_writes}")


@app.command()
def status(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Intents by workflow and state, writes, and duplicate writes (computed from the tables)."""
    project = _open(state_dir)
    st = project.status()
    if as_json:
        _emit(st.model_dump())
        return
    console.print(_status_table(st))
    console.print(f"writes: {st.writes}   duplicate_writes: {st.duplicate_writes}   stranded: {st.stranded}   "
                  f"partial_commits: {st.partial_commits}")


@app.command()
def ui(state_dir: StateDir = None, port: int = 3000) -> None:
    """Open the Dagster UI: dagster-webserver + dagster-daemon (the production pair) on the CLI's state."""
    from agent_pipelines.services.local import local_services

    project = _open(state_dir)
    # The run workers call the external systems' stand-ins in this process (unless their URLs are set).
    with local_services(project.settings.state_dir):
        _serve_ui(project, port)


def _serve_ui(project: Any, port: int) -> None:
    from agent_pipelines.project import REPO_ROOT
    from agent_pipelines.settings import DAEMON_INBOX_WATCH_S, WATCH_ENV

    s = project.settings
    # The daemon, its code server and run workers read our state from these, as `tick` does in-process.
    # The inbox sensor watches its folder between the daemon's 5 s sensor rounds (settings.py).
    env = {WATCH_ENV: str(DAEMON_INBOX_WATCH_S), **os.environ, "DAGSTER_HOME": str(s.dagster_home),
           "AGENT_PIPELINES_STATE_DIR": str(s.state_dir), "AGENT_PIPELINES_DB_URL": s.db_url}
    workspace = str(REPO_ROOT / "workspace.yaml")
    bin_dir = Path(sys.executable).parent
    console.print(f"DAGSTER_HOME={env['DAGSTER_HOME']}  http://127.0.0.1:{port}")
    # SIGTERM (a supervisor stopping us, `kill`) ends this command the way Ctrl-C does, through the
    # finally below: by default it would end this process at once and leave the daemon and the
    # webserver running on their own.
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop.handle)
    signal.signal(signal.SIGINT, stop.handle)
    daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", workspace], cwd=REPO_ROOT, env=env)
    webserver: subprocess.Popen[bytes] | None = None
    code = 1
    try:
        webserver = subprocess.Popen([str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
                                      "-w", workspace], cwd=REPO_ROOT, env=env)
        _wait([webserver], stop, until=float("inf"))
        rc = webserver.returncode
        code = 1 if rc is None else 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as a shell says
    finally:  # Ctrl-C, SIGTERM, a webserver exit or an error: never leave the daemon (or the webserver) running
        _stop_all([webserver, daemon], stop, grace_s=30)
    # The signal decides the exit code even when the webserver exited first (a terminal's Ctrl-C reaches
    # it too): 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them.
    raise typer.Exit(128 + stop.signum if stop.signum else code)


class _Stop:
    """SIGINT and SIGTERM while `ui` runs, only counted: the waits below look at the count, so a signal
    is acted on wherever it lands (an exception raised by the handler could land between two waits,
    outside any `try`, and skip the stopping)."""

    def __init__(self) -> None:
        self.signum = 0
        self.count = 0

    def handle(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum
        self.count += 1


def _wait(procs: list[subprocess.Popen[bytes]], stop: _Stop, until: float) -> bool:
    """Until every process has exited (True), or a stop signal beyond those counted already or the
    monotonic time `until` comes first (False). Looks at the signals twice a second."""
    seen = stop.count
    for p in procs:
        while p.poll() is None:
            if stop.count > seen or time.monotonic() >= until:
                return False
            try:
                p.wait(timeout=max(0.0, min(0.5, until - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
    return True


def _stop_all(procs: list[subprocess.Popen[bytes] | None], stop: _Stop, grace_s: float) -> None:
    """SIGTERM to each process still running (each stops its own code server), then up to `grace_s` for
    all of them to exit; any still running then, or after a second Ctrl-C or SIGTERM, is killed."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        p.terminate()
    if not _wait(live, stop, until=time.monotonic() + grace_s):
        for p in live:
            if p.poll() is None:
                p.kill()
        for p in live:
            p.wait()


approvals_app = typer.Typer(no_args_is_help=True, help="Decide approval requests (exact change, bound to its digest).")
app.add_typer(approvals_app, name="approvals")
# Who decides comes from the reviewer token (AGENT_PIPELINES_REVIEWER_TOKEN or a hidden prompt); --as only
# cross-checks it. See cli_reviewers.py.
Actor = Annotated[str | None, typer.Option("--as", help="cross-check: must name the token's reviewer")]


def _workflow(name: str):  # type: ignore[no-untyped-def]
    from agent_pipelines.workflows import all_workflows

    return {wf.name: wf for wf in all_workflows()}[name]


def _request(project: Any, approval_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from agent_pipelines.framework import approvals

    with project.db.connect() as conn:
        try:
            req, taken = approvals.get(conn, approval_id), approvals.decisions(conn, approval_id)
        except approvals.DecisionRefused as exc:
            _refused(str(exc))
    log_cli_read(project, "approvals show", intent_id=req["intent_id"], run_id=req["run_id"], approval_id=approval_id)
    return req, taken


@approvals_app.command("list")
def approvals_list(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Pending approval requests, oldest first."""
    from agent_pipelines.framework import approvals
    from agent_pipelines.framework.approvals import aware
    from agent_pipelines.framework.db import utcnow

    project = _open(state_dir)
    now = utcnow()
    rows = [{"approval_id": r["approval_id"], "workflow": r["workflow"], "intent_id": r["intent_id"],
             "source": Path(r["evidence"].get("source", "")).name, "rule": r["evidence"]["policy"]["rule"],
             "approvals_needed": r["required_approvals"],
             "age_hours": round((now - aware(r["created_at"])).total_seconds() / 3600, 2),
             "expires_at": aware(r["expires_at"]).isoformat(),
             "console_url": approvals.console_link(project.settings.console_url, r["approval_id"])}
            for r in approvals.pending(project.db)]
    if as_json:
        _emit({"pending": rows})
        return
    t = Table(title=f"{len(rows)} pending approval request(s)")
    for col in ("approval_id", "workflow", "source", "rule", "needs", "age (h)"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["approval_id"], r["workflow"], r["source"], r["rule"], str(r["approvals_needed"]),
                  str(r["age_hours"]))
    console.print(t)
    if rows:
        console.print(f"reviewer console: {project.settings.console_url} (`agent-pipelines console`)")


@approvals_app.command("show")
def approvals_show(approval_id: str, state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """The exact change, its digest, the evidence, the rationale and the decisions so far."""
    from agent_pipelines.framework import approvals
    from agent_pipelines.framework.redaction import redact

    project = _open(state_dir)
    req, taken = _request(project, approval_id)
    payload = {k: req[k] for k in ("approval_id", "workflow", "intent_id", "status", "digest", "requested_by",
                                   "required_approvals", "rationale", "created_at", "expires_at", "payload", "policy_digest",
                                   "evidence", "final_decision_id")}
    payload["decisions"] = taken
    payload["console_url"] = approvals.console_link(project.settings.console_url, approval_id)
    # What a terminal shows is redacted like the trace; the stored change (and its digest) is not.
    payload = redact(json.loads(json.dumps(payload, default=str)),
                     fields=_workflow(req["workflow"]).policy.data_handling.redact_fields)
    if as_json:
        _emit(payload)
        return
    console.print_json(json.dumps(payload, default=str))


def _decide(approval_id: str, actor: str | None, kind: str, note: str | None, state_dir: Path | None,
            changes: dict[str, Any] | None = None) -> None:
    from agent_pipelines.cli_reviewers import authenticated
    from agent_pipelines.framework import approvals, review

    from agent_pipelines.workflows import all_workflows

    project = _open(state_dir)
    reviewer = authenticated(project, actor)
    try:
        after = review.decide_request(project.db, project.approval_key, {wf.name: wf for wf in all_workflows()},
                                      approval_id, reviewer=reviewer, kind=approvals.DecisionKind(kind), note=note,
                                      changes=changes)
    except approvals.DecisionRefused as exc:
        _refused(str(exc))
    if after["status"] == "approved":
        console.print(f"{approval_id}: approved (decision {after['final_decision_id']}); the continuation run "
                      f"commits it on the next `agent-pipelines tick` (or the daemon's next sensor tick)")
    elif after["status"] == "denied":
        console.print(f"{approval_id}: denied; nothing will be written")
    else:
        console.print(f"{approval_id}: {len(after.get('approvals', []))} of {after['required_approvals']} "
                      f"approvals ({', '.join(after.get('approvals', []))}); waiting for another approver")


@approvals_app.command("approve")
def approvals_approve(approval_id: str, actor: Actor = None, note: Annotated[str | None, typer.Option("--note")] = None,
                      state_dir: StateDir = None) -> None:
    """Approve the change as it stands."""
    _decide(approval_id, actor, "approve", note, state_dir)


@approvals_app.command("deny")
def approvals_deny(approval_id: str, reason: Annotated[str, typer.Option("--reason")], actor: Actor = None,
                   state_dir: StateDir = None) -> None:
    """Deny: nothing is written; the reason is recorded."""
    _decide(approval_id, actor, "deny", reason, state_dir)


@approvals_app.command("edit")
def approvals_edit(approval_id: str,
                   sets: Annotated[list[str], typer.Option("--set", help="field=value (value parsed as JSON if it can be)")],
                   actor: Actor = None, note: Annotated[str | None, typer.Option("--note")] = None,
                   state_dir: StateDir = None) -> None:
    """Edit the proposal and approve the edited change (re-validated by the same rules and policy)."""
    changes: dict[str, Any] = {}
    for item in sets:
        field, sep, raw = item.partition("=")
        if not sep or not field.strip():
            _refused(f"--set expects field=value, got {item!r}")
        try:
            changes[field.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            changes[field.strip()] = raw
    _decide(approval_id, actor, "edit", note, state_dir, changes)


app.add_typer(reviewers_app, name="reviewers")
app.add_typer(audit_app, name="audit")
register_console(app)
register_controls(app)
register_bench(app)
register_evals(app)
register_llm(app)
register_services(app)
register_trace(app)
register_replay(app)

inputs_app = typer.Typer(no_args_is_help=True, help="Answer the questions of intents waiting for input.")
app.add_typer(inputs_app, name="inputs")


@inputs_app.command("list")
def inputs_list(state_dir: StateDir = None, as_json: AsJson = False) -> None:
    """Open questions of intents waiting for input."""
    from sqlalchemy import select

    from agent_pipelines.framework.redaction import redact
    from agent_pipelines.framework.tables import input_requests

    project = _open(state_dir)
    with project.db.connect() as conn:
        rows = [redact(json.loads(json.dumps(dict(r), default=str)))
                for r in conn.execute(select(input_requests).where(input_requests.c.status == "pending")
                                      .order_by(input_requests.c.created_at)).mappings()]
    if as_json:
        _emit({"questions": rows})
        return
    t = Table(title=f"{len(rows)} open question(s)")
    for col in ("intent_id", "field", "question", "expires_at"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["intent_id"], r["field"], r["question"], str(r["expires_at"]))
    console.print(t)


@inputs_app.command("provide")
def inputs_provide(intent_id: str, values: Annotated[list[str], typer.Argument(help="field=value ...")],
                   actor: Annotated[str, typer.Option("--as")] = "cli", state_dir: StateDir = None) -> None:
    """Answer an intent's open question; the next tick resumes it from its persisted steps."""
    from agent_pipelines.framework import inputs
    from agent_pipelines.framework.intents import IntentStore

    project = _open(state_dir)
    answer: dict[str, Any] = {}
    for item in values:
        field, sep, raw = item.partition("=")
        if not sep or not field.strip():
            _refused(f"expected field=value, got {item!r}")
        answer[field.strip()] = raw.strip()
    try:
        wf = _workflow(IntentStore(project.db).get(intent_id).workflow)
    except KeyError:
        _refused(f"no intent {intent_id!r}")
    try:
        req = inputs.provide(project.db, intent_id, answer, by=actor, allowed_fields=set(wf.intake_model.model_fields))
    except inputs.InputRefused as exc:
        _refused(str(exc))
    console.print(f"{intent_id}: answered {req['field']!r}; the next `agent-pipelines tick` resumes it")


def main() -> None:
    import warnings

    import dagster as dg

    # Dagster flags its own beta parameters at definition time; that is noise for a CLI user.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    app()


if __name__ == "__main__":
    main()
