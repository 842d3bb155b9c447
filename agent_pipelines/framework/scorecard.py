"""The scorecard: one workflow's operating figures per day (UTC), computed from our tables each time,
never from a stored counter, so a re-materialized day always agrees with the trace.

Every figure is one set-based query grouped by day over all requested days at once (a CASE on the
timestamp picks the day, which reads the same on SQLite and PostgreSQL); only the completion times come
back as rows, for the percentiles. What each figure counts:

- intents: intents of the workflow that changed state that day (the denominator of the intent rates);
- runs / failed_runs: (intent, run) pairs that moved an intent that day / those whose last move left
  it failed, needs_attention or quarantined -> run_success_rate;
- writes / duplicate_writes: committed ledger rows that day / those whose (intent, action) already had
  an earlier committed row, whatever its day -> duplicate_write_rate;
- retry_loops: intents that called one tool with equal arguments (tool_calls.call_digest) at least
  LOOP_REPEATS times in one run that day, or that the recovery sweeper had to resume
  (intents.recovery_attempts > 0) -> retry_loop_rate;
- reviews: intents with an approval request created that day -> human_review_rate;
- completed, time to complete p50/p95: intents completed that day, from their creation;
- llm_calls, tokens, cost_usd: the day's LLM calls -> cost_per_run, cost_per_success (per completion);
- policy_decisions / policy_blocks (decision `deny`) -> policy_block_rate;
- escalations: the day's escalations about the workflow's intents -> escalation_rate;
- queue_depth / stranded, as of the day's end (or now, for today): intents not in a terminal state, and
  those of them no one moves on (a sweepable state unchanged for longer than the lease), from the
  intents' last transitions before that time."""

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from statistics import quantiles
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, and_, case, distinct, func, literal, select, union

from agent_pipelines.framework.db import aware, utcnow
from agent_pipelines.framework.ledger import LANDED
from agent_pipelines.framework.policy import Decision
from agent_pipelines.framework.recovery import SWEEPABLE
from agent_pipelines.framework.states import TERMINAL
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.tables import (
    approval_requests,
    escalations,
    intent_transitions,
    intents,
    llm_calls,
    policy_decisions,
    tool_calls,
    writes,
)

FAULTS = (S.FAILED, S.NEEDS_ATTENTION, S.QUARANTINED)
# The same call this often in one run is a retry or a loop, not a re-read: a commit re-reads its context
# once (the second equal call); a third means the intent's steps ran again within the run (a batch run's
# solo retry after a conflict) or the agent looped (the policy's max_repeat_calls guard stops that).
LOOP_REPEATS = 3


class DayMetrics(BaseModel):
    workflow: str
    day: date
    intents: int = 0
    runs: int = 0
    failed_runs: int = 0
    writes: int = 0
    duplicate_writes: int = 0
    retry_loops: int = 0
    reviews: int = 0
    completed: int = 0
    time_to_complete_p50_s: float | None = None
    time_to_complete_p95_s: float | None = None
    llm_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    policy_decisions: int = 0
    policy_blocks: int = 0
    escalations: int = 0
    queue_depth: int = 0
    stranded: int = 0

    def rates(self) -> dict[str, float | None]:
        """Each rate, or None where its denominator is 0 (a day without runs has no success rate)."""
        return {
            "run_success_rate": _ratio(self.runs - self.failed_runs, self.runs),
            "duplicate_write_rate": _ratio(self.duplicate_writes, self.writes),
            "retry_loop_rate": _ratio(self.retry_loops, self.intents),
            "human_review_rate": _ratio(self.reviews, self.intents),
            "policy_block_rate": _ratio(self.policy_blocks, self.policy_decisions),
            "escalation_rate": _ratio(self.escalations, self.intents),
            "cost_per_run_usd": _ratio(self.cost_usd, self.runs),
            "cost_per_success_usd": _ratio(self.cost_usd, self.completed),
        }

    def figures(self) -> dict[str, int | float]:
        """The counts and the defined rates (what the asset shows and charts)."""
        counts = self.model_dump(exclude={"workflow", "day"})
        return {k: v for k, v in {**counts, **self.rates()}.items() if v is not None}


def _ratio(num: float, den: float) -> float | None:
    return round(num / den, 8) if den else None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _bucket(col: Any, days: Sequence[date]) -> Any:
    """The index of the day `col` falls in (NULL outside them)."""
    return case(*[(and_(col >= lo, col < hi), n) for n, (lo, hi) in enumerate(map(day_bounds, days))])


def _within(col: Any, days: Sequence[date]) -> Any:
    return and_(col >= day_bounds(min(days))[0], col < day_bounds(max(days))[1])


def compute(conn: Connection, workflow: str, days: Sequence[date], *, lease_s: float,
            now: datetime | None = None) -> dict[date, DayMetrics]:
    """The workflow's figures for each of `days`."""
    now = now or utcnow()
    days = sorted(set(days))
    values: dict[date, dict[str, Any]] = {d: {} for d in days}

    def put(rows: Any, *fields: str) -> None:
        for row in rows:
            if row[0] is not None:
                values[days[row[0]]].update({f: v for f, v in zip(fields, row[1:], strict=True) if v is not None})

    t, i = intent_transitions.c, intents.c
    b = _bucket(t.at, days).label("b")
    run_key = t.intent_id + literal(":") + t.run_id  # NULL without a run
    put(conn.execute(
        select(b, func.count(distinct(t.intent_id)), func.count(distinct(run_key)),
               func.sum(case((t.to_state == S.COMPLETED, 1), else_=0)))
        .join_from(intent_transitions, intents, i.intent_id == t.intent_id)
        .where(i.workflow == workflow, _within(t.at, days)).group_by(b)),
        "intents", "runs", "completed")
    # A run failed when it left the intent in a fault state: its last transition of the intent is one
    # (a batch run that retries an intent after a conflict and then completes it did not fail).
    last = select(func.max(t.id)).join_from(intent_transitions, intents, i.intent_id == t.intent_id) \
        .where(i.workflow == workflow, t.run_id.is_not(None), _within(t.at, days)).group_by(t.intent_id, t.run_id)
    put(conn.execute(select(b, func.count()).where(t.id.in_(last), t.to_state.in_([str(s) for s in FAULTS]))
                     .group_by(b)), "failed_runs")

    put(conn.execute(_writes_stmt(workflow, days)), "writes", "duplicate_writes")
    put(conn.execute(_loops_stmt(workflow, days)), "retry_loops")

    a = approval_requests.c
    b = _bucket(a.created_at, days).label("b")
    put(conn.execute(select(b, func.count(distinct(a.intent_id))).where(
        a.workflow == workflow, _within(a.created_at, days)).group_by(b)), "reviews")

    lc = llm_calls.c
    b = _bucket(lc.at, days).label("b")
    put(conn.execute(select(b, func.count(), func.sum(lc.prompt_tokens + lc.completion_tokens), func.sum(lc.cost_usd))
                     .where(lc.workflow == workflow, _within(lc.at, days)).group_by(b)),
        "llm_calls", "tokens", "cost_usd")

    p = policy_decisions.c
    b = _bucket(p.at, days).label("b")
    put(conn.execute(select(b, func.count(), func.sum(case((p.decision == Decision.DENY, 1), else_=0)))
                     .where(p.workflow == workflow, _within(p.at, days)).group_by(b)),
        "policy_decisions", "policy_blocks")

    e = escalations.c
    b = _bucket(e.at, days).label("b")
    put(conn.execute(select(b, func.count()).join_from(escalations, intents, i.intent_id == e.intent_id)
                     .where(i.workflow == workflow, _within(e.at, days)).group_by(b)), "escalations")

    out = {}
    for d in days:
        p50, p95 = _completion_percentiles(conn, workflow, d)
        depth, stranded = _backlog(conn, workflow, min(day_bounds(d)[1], now), lease_s)
        cost = round(float(values[d].pop("cost_usd", 0.0)), 8)
        out[d] = DayMetrics(workflow=workflow, day=d, **values[d], cost_usd=cost, time_to_complete_p50_s=p50,
                            time_to_complete_p95_s=p95, queue_depth=depth, stranded=stranded)
    return out


def _writes_stmt(workflow: str, days: Sequence[date]) -> Any:
    """Committed ledger rows per day, and those that repeat an (intent, action) committed before. The
    window runs over every committed row of the intents written in these days, so a repeat of an
    earlier day's write counts on the day it landed."""
    w = writes.c
    touched = select(w.intent_id).where(w.workflow == workflow, _within(w.at, days))
    ranked = select(w.at, func.row_number().over(partition_by=(w.intent_id, w.action), order_by=w.id).label("rn")) \
        .where(w.status.in_(LANDED), w.intent_id.in_(touched)).subquery()
    b = _bucket(ranked.c.at, days).label("b")
    return select(b, func.count(), func.sum(case((ranked.c.rn > 1, 1), else_=0))) \
        .where(_within(ranked.c.at, days)).group_by(b)


def _loops_stmt(workflow: str, days: Sequence[date]) -> Any:
    """Intents per day in a retry loop: an equal call repeated in one run, or resumed by recovery."""
    tc, t, i = tool_calls.c, intent_transitions.c, intents.c
    bt = _bucket(tc.at, days)
    looping = select(bt.label("b"), tc.intent_id).where(
        tc.workflow == workflow, tc.intent_id.is_not(None), _within(tc.at, days)) \
        .group_by(bt, tc.intent_id, tc.run_id, tc.call_digest).having(func.count() >= LOOP_REPEATS)
    bi = _bucket(t.at, days)
    recovered = select(bi.label("b"), t.intent_id).join_from(intent_transitions, intents, i.intent_id == t.intent_id) \
        .where(i.workflow == workflow, i.recovery_attempts > 0, _within(t.at, days))
    both = union(looping, recovered).subquery()
    return select(both.c.b, func.count(distinct(both.c.intent_id))).group_by(both.c.b)


def _completion_percentiles(conn: Connection, workflow: str, day: date) -> tuple[float | None, float | None]:
    """p50 and p95 of creation -> completed, in seconds, over the intents completed that day."""
    t, i = intent_transitions.c, intents.c
    lo, hi = day_bounds(day)
    rows = conn.execute(select(i.created_at, t.at).join_from(intent_transitions, intents, i.intent_id == t.intent_id)
                        .where(i.workflow == workflow, t.to_state == S.COMPLETED, t.at >= lo, t.at < hi)).all()
    seconds = sorted(max((aware(done) - aware(created)).total_seconds(), 0.0) for created, done in rows)
    if not seconds:
        return None, None
    if len(seconds) == 1:
        return round(seconds[0], 3), round(seconds[0], 3)
    cuts = quantiles(seconds, n=100, method="inclusive")
    return round(cuts[49], 3), round(cuts[94], 3)


def _backlog(conn: Connection, workflow: str, as_of: datetime, lease_s: float) -> tuple[int, int]:
    """(open intents, stranded intents) as of `as_of`, from each intent's last transition before it."""
    t, i = intent_transitions.c, intents.c
    last = select(func.max(t.id)).join_from(intent_transitions, intents, i.intent_id == t.intent_id) \
        .where(i.workflow == workflow, t.at < as_of).group_by(t.intent_id)
    open_ = t.to_state.not_in([str(s) for s in TERMINAL])
    stuck = and_(t.to_state.in_([str(s) for s in SWEEPABLE]), t.at < as_of - timedelta(seconds=lease_s))
    row = conn.execute(select(func.sum(case((open_, 1), else_=0)), func.sum(case((stuck, 1), else_=0)))
                       .where(t.id.in_(last))).one()
    return int(row[0] or 0), int(row[1] or 0)
