"""The replay recording of one intent's run, written by the framework's steps (never by a workflow): at
READ, the versions the run is pinned to (workflow, prompt, policy pack, mode, model) and a digest of
the intake it starts from; at VALIDATE, what policy decided and the writes it planned. With the read
step's tool calls (tool_calls, step "read") and the proposal (llm_calls.output) it is everything
`replay` needs to re-run the intent's decision (framework/replay.py)."""

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.llm import LLMConfig, Proposer
from agent_pipelines.framework.policy import Mode, PolicyDecision
from agent_pipelines.framework.rowbuffer import RowKind, Sink
from agent_pipelines.framework.tables import intent_runs
from agent_pipelines.framework.workflow import Workflow, WriteAction


class PlannedWrite(BaseModel):
    """One write a decision planned, as recorded and as replayed: the record it targets (from the
    workflow's preview_write) and its parameters, redacted like the trace."""

    model_config = ConfigDict(frozen=True)
    action: str
    tool: str
    target: str
    params: dict[str, Any]


def intake_digest(intake: Any) -> str:
    """The intake's identity: an answered question changes it, so a replay knows which intake a run saw."""
    data = intake.model_dump(mode="json") if isinstance(intake, BaseModel) else intake
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def planned_writes(wf: Workflow, context: BaseModel, plan: list[WriteAction] | tuple[WriteAction, ...],
                   redact: Callable[[Any], Any]) -> list[PlannedWrite]:
    out = []
    for a in plan:
        preview = wf.preview_write(context, a)
        target = f"{preview.table}:{preview.key}" if preview.key else preview.table
        out.append(PlannedWrite(action=a.action, tool=a.tool, target=target,
                                params=redact(a.model_dump(mode="json")["params"])))
    return out


# Written now or with a batch step's rows (framework/rowbuffer.py): the decision after its run's start.
RUN_START = RowKind(intent_runs, "upsert", ("run_id", "intent_id"), rank=0)
RUN_DECISION = RowKind(intent_runs, "update", ("run_id", "intent_id"), rank=1)


def rule_name(decision: PolicyDecision) -> str:
    """The deciding rule as intent_runs.rule holds it (String(64)), for the recording and the replay alike."""
    return decision.rule[:64]


def record_start(sink: Sink, wf: Workflow, *, run_id: str, intent_id: str, mode: Mode, llm: LLMConfig,
                 intake: BaseModel) -> None:
    """READ began for this intent in this run (again, for a batch's solo retry: the row starts over)."""
    row = {"run_id": run_id, "intent_id": intent_id, "workflow": wf.name, "workflow_version": wf.version,
           "prompt_version": wf.prompt_version, "policy_version": wf.policy.version,
           "policy_digest": wf.policy.digest, "mode": str(mode), "provider": llm.provider,
           "model": Proposer(llm).model_name, "intake_digest": intake_digest(intake), "decision": None, "rule": None,
           "planned_writes": None, "started_at": utcnow(), "decided_at": None}
    sink.put(RUN_START, row)


def record_decision(sink: Sink, *, run_id: str, intent_id: str, decision: PolicyDecision,
                    writes: list[PlannedWrite]) -> None:
    values = {"decision": str(decision.decision), "rule": rule_name(decision), "decided_at": utcnow(),
              "planned_writes": [w.model_dump(mode="json") for w in writes]}
    sink.put(RUN_DECISION, {"run_id": run_id, "intent_id": intent_id, **values})
