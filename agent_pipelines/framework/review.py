"""A person's decision on a request, the one path the CLI and the reviewer console both take
(`decide_request`), and edit-and-approve: an approver changes the proposal; the edited change goes
through the same validation rules, pre-write suites and policy as the original, and gets a new digest."""

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from agent_pipelines.framework import approvals, quality
from agent_pipelines.framework.approvals import DecisionRefused
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.policy import Decision
from agent_pipelines.framework.reviewers import Reviewer
from agent_pipelines.framework.signing import ApprovalKey
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
    step = Step(intent=IntentStore(db).get(req["intent_id"]), tools=ToolGateway(wf.registry, wf.policy, db, tracer),
                run_id=None, log=lambda _m: None)
    v = wf.validate(step, intake, context, proposal)
    v = v.model_copy(update={"suites": v.suites + quality.run_checks(v.checks)})
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


def workflow_of(db: Database, workflows: Mapping[str, Workflow],
                approval_id: str) -> tuple[Workflow, dict[str, Any]]:
    """The workflow (hence the policy pack) that decides a request, and the request; DecisionRefused if
    the id is unknown or its workflow is not deployed here."""
    with db.connect() as conn:
        req = approvals.get(conn, approval_id)
    wf = workflows.get(req["workflow"])
    if wf is None:
        raise DecisionRefused(f"{approval_id} is a {req['workflow']} request; that workflow is not deployed here")
    return wf, req


def decide_request(db: Database, key: ApprovalKey, workflows: Mapping[str, Workflow], approval_id: str, *,
                   reviewer: Reviewer, kind: approvals.DecisionKind, note: str | None = None,
                   changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Take an authenticated reviewer's decision under the request's workflow's policy pack: an edit
    (`changes` applied to the change on the table) is re-validated first. Returns the request after
    it; DecisionRefused (nothing changed) otherwise."""
    wf, _ = workflow_of(db, workflows, approval_id)
    edited = None
    if kind == approvals.DecisionKind.EDIT:
        if not changes:
            raise DecisionRefused("an edit needs at least one changed field")
        edited = revise(wf, db, approval_id, changes)
    return approvals.decide(db, wf.policy, approval_id, reviewer=reviewer, key=key, kind=kind, note=note,
                            edited_payload=edited)
