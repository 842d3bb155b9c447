"""Edit-and-approve: an approver changes the proposal; the edited change goes through the same
validation rules, pre-write suites and policy as the original, and gets a new digest."""

from typing import Any

from pydantic import ValidationError

from agent_pipelines.framework import approvals
from agent_pipelines.framework.approvals import DecisionRefused
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.policy import Decision
from agent_pipelines.framework.trace import Tracer
from agent_pipelines.framework.workflow import Step, Workflow


def revise(wf: Workflow, db: Database, approval_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The edited change (writes + proposal) for `changes` applied to the change on the table."""
    with db.connect() as conn:
        req = approvals.get(conn, approval_id)
        base, _ = approvals.current_change(req, approvals.decisions(conn, approval_id))
    unknown = sorted(set(changes) - set(wf.proposal_model.model_fields))
    if unknown:
        raise DecisionRefused(f"unknown proposal field(s) {unknown}; editable: {sorted(wf.proposal_model.model_fields)}")
    evidence = req["evidence"]
    intake = wf.intake_model.model_validate(evidence["intake"])
    context = wf.context_model.model_validate(evidence["context"])
    try:
        proposal = wf.proposal_model.model_validate({**base["proposal"], **changes})
    except ValidationError as exc:
        raise DecisionRefused(f"the edited proposal is invalid: {exc.errors()[0]['msg']}") from exc
    tracer = Tracer(db, workflow=wf.name, intent_id=req["intent_id"], run_id=None)
    step = Step(intent=IntentStore(db).get(req["intent_id"]), tools=ToolGateway(wf.tools(), wf.policy, db, tracer),
                run_id=None, log=lambda _m: None)
    v = wf.validate(step, intake, context, proposal)
    problems = [f"{x.rule}: {x.message}" for x in v.violations] + [f"{s.suite} failed" for s in v.suites if not s.passed]
    if v.need_input is not None:
        problems.append(f"needs input: {v.need_input.question}")
    if problems:
        raise DecisionRefused("the edited proposal fails validation: " + "; ".join(problems))
    decision = wf.policy.decide(v.facts)
    tracer.policy(f"edit:{approval_id}", decision)
    if decision.decision == Decision.DENY:
        raise DecisionRefused("policy denies the edited proposal: " + "; ".join(decision.reasons))
    plan = wf.plan_writes(req["intent_id"], intake, context, proposal)
    return {"writes": [a.model_dump(mode="json") for a in plan], "proposal": proposal.model_dump(mode="json")}
