"""Evals: a workflow's gold cases (framework/gold.py) through the real workflow code, scored with
pydantic-evals.

`run_gold` loads every case into the given (fresh) state, takes all of them through the workflow's
batch job in one in-process run (each case has its own records, so no case reads another's), and reads
each case's outcome back from our tables: the intent's state and reason, the policy decision, the
ledger, the stored plan or approval request, and the LLM calls. The pydantic-evals Dataset then scores
those outcomes; its task only looks the outcome up, because the batch run already did the work for
all cases at once (one Dagster run instead of one per case).

Metrics, per workflow and version (workflow, prompt, policy pack, model):
- accuracy: cases whose state, rule and writes all match gold;
- containment: cases that ended `completed` with no human (no approval, no answer);
- review rate: cases sent to a human approver (`waiting_for_approval`);
- false approvals: cases that completed although gold says approval, denial, rejection or a question;
- false rejections: cases rejected or denied although gold says the change goes ahead (completed or
  approved by a human);
- cost per successful outcome: LLM cost of the whole run over the cases that matched gold."""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import BaseModel
from pydantic_evals import Case, Dataset
from pydantic_evals.evaluators import EvaluationReason, Evaluator, EvaluatorContext
from sqlalchemy import func, select

from agent_pipelines.framework import inputs
from agent_pipelines.framework.batch import batch_run_config
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.gold import Expected, GoldCase, GoldFile, load_cases
from agent_pipelines.framework.ledger import LANDED
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.tables import (
    approval_requests,
    intents,
    llm_calls,
    policy_decisions,
    writes,
)
from agent_pipelines.framework.workflow import Workflow

POLICY_DECIDED = frozenset({S.COMPLETED, S.WAITING_FOR_APPROVAL, S.DENIED})
GOES_AHEAD = frozenset({S.COMPLETED, S.WAITING_FOR_APPROVAL})
REFUSED = frozenset({S.REJECTED_INPUT, S.DENIED})
_RULE = re.compile(r"^([a-z_][a-z0-9_.]*)")


class ObservedWrite(BaseModel):
    action: str
    target: str | None  # table:key once committed
    committed: bool
    params: dict[str, Any]


class Observed(BaseModel):
    """What a case's intent ended as, read from our tables."""

    state: str
    rule: str | None
    reason: str | None
    writes: list[ObservedWrite]
    cost_usd: float = 0.0
    tokens: int = 0
    model: str | None = None

    def brief(self) -> str:
        ws = ", ".join(w.action + ("" if w.committed else " (planned)") for w in self.writes) or "no writes"
        return f"{self.state} / {self.rule} / {ws}"


def _rule(state: S, reason: str | None, decided: str | None) -> str | None:
    """The rule an outcome names (see framework/gold.py): the policy's for the states policy decides, else
    the first rule or question field the reason starts with."""
    if state in POLICY_DECIDED:
        return decided
    m = _RULE.match(reason or "")
    return m.group(1) if m else None


def observe(db: Database, wf: Workflow, intent_id: str) -> Observed:
    with db.connect() as conn:
        row = conn.execute(select(intents.c.state, intents.c.reason).where(intents.c.intent_id == intent_id)).one()
        decided = conn.execute(select(policy_decisions.c.rule).where(
            policy_decisions.c.intent_id == intent_id, policy_decisions.c.subject == "proposal")
            .order_by(policy_decisions.c.id.desc()).limit(1)).scalar()
        ledger = conn.execute(select(writes.c.action, writes.c.target).where(
            writes.c.intent_id == intent_id, writes.c.status.in_(LANDED)).order_by(writes.c.id)).all()
        request = conn.execute(select(approval_requests.c.payload).where(
            approval_requests.c.intent_id == intent_id).order_by(approval_requests.c.created_at.desc())
            .limit(1)).scalar()
        cost, tokens = conn.execute(select(
            func.coalesce(func.sum(llm_calls.c.cost_usd), 0.0),
            func.coalesce(func.sum(llm_calls.c.prompt_tokens + llm_calls.c.completion_tokens), 0)).where(
            llm_calls.c.intent_id == intent_id)).one()
        model = conn.execute(select(llm_calls.c.model).where(llm_calls.c.intent_id == intent_id).limit(1)).scalar()
    state = S(row.state)
    if ledger:  # committed: the plan the commit step stored before writing, with what landed
        saved = inputs.saved_step(db, intent_id, "commit")
        plan = {w["action"]: w["params"] for w in (saved["output"].get("plan") or [])} if saved else {}
        seen = [ObservedWrite(action=a, target=t, committed=True, params=plan.get(a, {})) for a, t in ledger]
    elif request is not None and state == S.WAITING_FOR_APPROVAL:
        seen = [ObservedWrite(action=w["action"], target=None, committed=False, params=w["params"])
                for w in request["writes"]]
    else:
        seen = []
    return Observed(state=str(state), rule=_rule(state, row.reason, decided), reason=row.reason, writes=seen,
                    cost_usd=float(cost), tokens=int(tokens), model=model)


# -- evaluators (pydantic-evals) ----------------------------------------------------------------------
Ctx = EvaluatorContext[GoldCase, Observed, dict[str, Any]]


@dataclass
class TerminalState(Evaluator[GoldCase, Observed, dict[str, Any]]):
    """The intent ends in the state gold names."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        want, got = ctx.inputs.expected.state, ctx.output.state
        return EvaluationReason(value=got == want, reason=f"expected {want}, got {got}: {ctx.output.reason}")


@dataclass
class DecisiveRule(Evaluator[GoldCase, Observed, dict[str, Any]]):
    """The rule that decided is the one gold names (when it names one)."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        want, got = ctx.inputs.expected.rule, ctx.output.rule
        return EvaluationReason(value=want is None or got == want, reason=f"expected rule {want}, got {got}")


def write_mismatches(expected: Expected, writes: list[ObservedWrite]) -> list[str]:
    """How the writes differ from gold: the actions in order, committed exactly when gold says completed,
    and every target and parameter gold names."""
    problems = []
    want = [w.action for w in expected.writes]
    got = [w.action for w in writes]
    if want != got:
        problems.append(f"actions {want} != {got}")
    committed = expected.state == S.COMPLETED
    wrong = [w.action for w in writes if w.committed != committed]
    if wrong:
        problems.append(f"{wrong} {'not ' if committed else ''}committed")
    for e, o in zip(expected.writes, writes, strict=False):
        if e.action != o.action:
            continue
        if e.target is not None and e.target != o.target:
            problems.append(f"{e.action}: target {e.target} != {o.target}")
        for k, v in e.params.items():
            if o.params.get(k) != v:
                problems.append(f"{e.action}: {k} {v!r} != {o.params.get(k)!r}")
    return problems


@dataclass
class ExpectedWrites(Evaluator[GoldCase, Observed, dict[str, Any]]):
    """The writes committed (or awaiting approval) are the ones gold lists, with its targets and amounts."""

    def evaluate(self, ctx: Ctx) -> EvaluationReason:
        problems = write_mismatches(ctx.inputs.expected, ctx.output.writes)
        return EvaluationReason(value=not problems, reason="; ".join(problems) or "writes as expected")


EVALUATORS = (TerminalState(), DecisiveRule(), ExpectedWrites())


# -- the run and its report ---------------------------------------------------------------------------
class CaseResult(BaseModel):
    name: str
    passed: bool
    expected: Expected
    observed: Observed
    failures: list[str]  # "<evaluator>: <reason>" for each failed check

    def expected_brief(self) -> str:
        ws = ", ".join(w.action for w in self.expected.writes) or "no writes"
        return f"{self.expected.state} / {self.expected.rule} / {ws}"


class Metrics(BaseModel):
    cases: int
    passed: int
    accuracy: float
    containment: float
    review_rate: float
    false_approvals: int
    false_rejections: int
    cost_usd: float
    tokens: int
    cost_per_success_usd: float | None


class WorkflowReport(BaseModel):
    workflow: str
    workflow_version: str
    prompt_version: str
    policy_version: str
    policy_digest: str
    model: str
    run_success: bool
    metrics: Metrics
    cases: list[CaseResult]

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]


def metrics(results: list[CaseResult]) -> Metrics:
    n = len(results) or 1
    states = [(S(r.expected.state), S(r.observed.state)) for r in results]
    passed = sum(r.passed for r in results)
    cost = round(sum(r.observed.cost_usd for r in results), 6)
    return Metrics(
        cases=len(results), passed=passed, accuracy=round(passed / n, 4),
        containment=round(sum(got == S.COMPLETED for _, got in states) / n, 4),
        review_rate=round(sum(got == S.WAITING_FOR_APPROVAL for _, got in states) / n, 4),
        false_approvals=sum(got == S.COMPLETED and want != S.COMPLETED for want, got in states),
        false_rejections=sum(got in REFUSED and want in GOES_AHEAD for want, got in states),
        cost_usd=cost, tokens=sum(r.observed.tokens for r in results),
        cost_per_success_usd=round(cost / passed, 6) if passed else None)


def score(wf: Workflow, gold: GoldFile, outcomes: dict[str, Observed]) -> list[CaseResult]:
    """Score the observed outcomes with a pydantic-evals Dataset of the gold cases."""
    dataset: Dataset[GoldCase, Observed, dict[str, Any]] = Dataset(
        name=f"{wf.name}.gold", evaluators=list(EVALUATORS),
        cases=[Case(name=c.name, inputs=c, expected_output=None, metadata={"tags": list(c.tags)}) for c in gold.cases])
    report = dataset.evaluate_sync(lambda case: outcomes[case.name], progress=False, task_name="batch_outcome")
    if report.failures:  # the task itself raised (an outcome is missing): a harness error, not a score
        raise RuntimeError(f"{wf.name}: evaluation failed for {[f.name for f in report.failures]}: "
                           f"{report.failures[0].error_message}")
    by_name = {c.name: c for c in gold.cases}
    results = []
    for rc in report.cases:
        failures = [f"{name}: {a.reason}" for name, a in rc.assertions.items() if not a.value]
        failures += [f"{f.name}: evaluator error {f.error_message}" for f in rc.evaluator_failures]
        results.append(CaseResult(name=rc.name, passed=not failures, expected=by_name[rc.name].expected,
                                  observed=rc.output, failures=failures))
    order = {c.name: i for i, c in enumerate(gold.cases)}
    return sorted(results, key=lambda r: order[r.name])


def run_gold(wf: Workflow, gold: GoldFile, db: Database, execute: Callable[[dg.JobDefinition, dict], bool],
             job: dg.JobDefinition, model: str) -> WorkflowReport:
    """Load the cases, run them all through `job` (the workflow's batch job) with `execute(job, run_config)`,
    and score each case's outcome."""
    from agent_pipelines.services.local import local_services

    with local_services():  # the external systems the cases read and write (unless their URLs are set)
        ids = load_cases(db, wf, gold)
        ok = execute(job, batch_run_config(wf, list(ids.values()), chunk_size=max(1, len(ids))))
    outcomes = {name: observe(db, wf, intent_id) for name, intent_id in ids.items()}
    results = score(wf, gold, outcomes)
    return WorkflowReport(workflow=wf.name, workflow_version=wf.version, prompt_version=wf.prompt_version,
                          policy_version=wf.policy.version, policy_digest=wf.policy.digest[:12], model=model,
                          run_success=ok, metrics=metrics(results), cases=results)


def mismatch_lines(report: WorkflowReport) -> list[str]:
    """One line per failed case: the case, what gold expects and what happened."""
    return [f"{report.workflow}/{c.name}: expected {c.expected_brief()}; got {c.observed.brief()} "
            f"[{' | '.join(c.failures)}]" for c in report.failed]


def table_rows(reports: list[WorkflowReport]) -> list[dict[str, Any]]:
    return [{"workflow": r.workflow, "version": r.workflow_version, "prompt": r.prompt_version,
             "policy": f"{r.policy_version} ({r.policy_digest})", "model": r.model, "cases": r.metrics.cases,
             "accuracy": f"{r.metrics.accuracy:.1%}", "containment": f"{r.metrics.containment:.1%}",
             "review_rate": f"{r.metrics.review_rate:.1%}", "false_approvals": r.metrics.false_approvals,
             "false_rejections": r.metrics.false_rejections,
             "cost_per_success_usd": ("n/a" if r.metrics.cost_per_success_usd is None
                                      else f"{r.metrics.cost_per_success_usd:.6f}")} for r in reports]
