"""`agent-pipelines replay` and `agent-pipelines diff`: re-run recorded intents in a sandbox
(framework/replay.py) and compare the outcomes with the recording (framework/replay_diff.py)."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agent_pipelines.cli_common import AsJson, StateDir, console
from agent_pipelines.cli_common import refused as _refused

IntentArg = Annotated[str | None, typer.Argument(help="one intent (default: every intent with a recorded run)")]
RunOpt = Annotated[str | None, typer.Option("--run", help="the intents of one run")]
WorkflowOpt = Annotated[str | None, typer.Option("--workflow", help="the intents of one workflow")]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="replay under this policy pack (policy.yaml format)")]
PromptOpt = Annotated[str | None, typer.Option("--prompt-version", help="the proposal recorded under this prompt version")]
LiveOpt = Annotated[bool, typer.Option("--live-model", help="ask the configured model instead of the recording")]


def _run(intent_id: str | None, run_id: str | None, workflow: str | None, policy_file: Path | None,
         prompt_version: str | None, live_model: bool, state_dir: Path | None, as_json: bool, diff: bool) -> None:
    from agent_pipelines.framework import replay, replay_diff
    from agent_pipelines.framework.policy import PolicyError, PolicyPack
    from agent_pipelines.framework.redaction import redact
    from agent_pipelines.project import Project
    from agent_pipelines.workflows import all_workflows

    project = Project.open(state_dir)
    workflows = {wf.name: wf for wf in all_workflows()}
    if workflow is not None and workflow not in workflows:
        _refused(f"unknown workflow {workflow!r}; one of {sorted(workflows)}")
    try:
        policy = PolicyPack.load(policy_file) if policy_file is not None else None
    except PolicyError as exc:
        _refused(str(exc))
    if policy is not None and policy.workflow not in workflows:
        _refused(f"the policy pack is for {policy.workflow!r}, which is not a workflow here")
    with project.db.connect() as conn:
        selected = replay.select_runs(conn, intent_id=intent_id, run_id=run_id, workflow=workflow)
        skipped = [] if run_id is not None else [
            u for u in replay.unrecorded_intents(conn, workflow) if intent_id in (None, u["intent_id"])]
    if intent_id is not None and not selected:
        _refused(f"nothing to replay for intent {intent_id}: "
                 + (skipped[0]["why"] if skipped else "no such intent" + (f" in run {run_id}" if run_id else "")))
    try:
        results = replay.replay_selected(project.db, workflows, selected, policy=policy,
                                         llm=project.settings.llm if live_model else None,
                                         prompt_version=prompt_version)
    except replay.ReplayError as exc:
        _refused(str(exc))
    changes = replay_diff.policy_changes(workflows[policy.workflow].policy, policy) if policy is not None else []
    done = sum(r.reproduced for r in results)
    pct = round(100.0 * done / len(results), 1) if results else 0.0
    headline = f"replayed {len(results)} intents: {done} reproduced ({pct} %)"
    lines = replay_diff.summary(results, changes)
    if as_json:
        sys.stdout.write(json.dumps(redact({
            "replayed": len(results), "reproduced": done, "reproduced_pct": pct, "headline": headline,
            "policy_changes": changes, "summary": lines, "moves": replay_diff.moves(results),
            "not_replayable": skipped,
            "intents": [_row(r, replay_diff.field_diffs(r.recorded, r.replayed)) for r in results]},
        ), default=str, sort_keys=True) + "\n")
        return
    if diff:
        for r in results:
            fields = replay_diff.field_diffs(r.recorded, r.replayed)
            if fields:
                console.print(f"[bold]{r.intent_id}[/] ({r.workflow}, run {r.run_id})")
                for name, d in fields.items():
                    console.print(f"  {name}: {json.dumps(redact(d['recorded']), default=str)} → "
                                  f"{json.dumps(redact(d['replayed']), default=str)}", markup=False)
    else:
        console.print(_table(results))
    for line in [*lines, *(f"not replayable: {u['intent_id']} ({u['state']}): {u['why']}" for u in skipped)]:
        console.print(line, markup=False, soft_wrap=True)
    console.print(headline, markup=False)


def _row(r: Any, fields: dict[str, Any]) -> dict[str, Any]:
    return {"intent_id": r.intent_id, "workflow": r.workflow, "run_id": r.run_id, "reproduced": r.reproduced,
            "recorded": r.recorded.model_dump(mode="json"), "replayed": r.replayed.model_dump(mode="json"),
            "diff": fields}


def _table(results: list[Any]) -> Table:
    t = Table(title="replay: the recorded outcome, then the replay's")
    for col in ("intent", "recorded", "replayed", "decision / rule", "planned writes", ""):
        t.add_column(col, overflow="fold")
    for r in results:
        out = r.replayed
        writes = ", ".join(f"{w.action} {w.target}" for w in out.writes)
        t.add_row(r.intent_id, str(r.recorded.state), str(out.state) if out.error is None else f"error: {out.error}",
                  f"{out.decision or '-'} / {out.rule or '-'}", writes or "-",
                  "reproduced" if r.reproduced else "DIFFERS")
    return t


def register(app: typer.Typer) -> None:
    @app.command("replay")
    def replay_cmd(intent_id: IntentArg = None, run_id: RunOpt = None, workflow: WorkflowOpt = None,
                   policy: PolicyOpt = None, prompt_version: PromptOpt = None, live_model: LiveOpt = False,
                   diff: Annotated[bool, typer.Option("--diff", help="print the field diffs instead of every row")] = False,
                   state_dir: StateDir = None, as_json: AsJson = False) -> None:
        """Re-run recorded intents in a sandbox: reads and the model answer from the recording, writes are
        planned, never executed; prints each decision, its planned writes and whether it reproduced."""
        _run(intent_id, run_id, workflow, policy, prompt_version, live_model, state_dir, as_json, diff)

    @app.command("diff")
    def diff_cmd(intent_id: IntentArg = None, run_id: RunOpt = None, workflow: WorkflowOpt = None,
                 policy: PolicyOpt = None, prompt_version: PromptOpt = None, live_model: LiveOpt = False,
                 state_dir: StateDir = None, as_json: AsJson = False) -> None:
        """The recorded outcome against the replay's, field by field, and the intents a change moves."""
        _run(intent_id, run_id, workflow, policy, prompt_version, live_model, state_dir, as_json, True)
