"""Per-run budgets: LLM tokens and cost, tool calls, wall time, and loop detection.

Usage is counted from the trace tables of this run (not from counters in memory), so every step of
a run, in whatever process, sees the same totals, and the evidence of a breach is the trace itself."""

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from agent_pipelines.framework.db import Database
from agent_pipelines.framework.policy import Budgets
from agent_pipelines.framework.tables import llm_calls, policy_decisions, tool_calls


class BudgetExceeded(Exception):
    """A per-run cap was crossed: the intent is quarantined and the run writes nothing more."""

    def __init__(self, budget: str, limit: float, observed: float, detail: str = "") -> None:
        self.budget, self.limit, self.observed, self.detail = budget, limit, observed, detail
        super().__init__(f"budget {budget} exceeded: {observed:g} > {limit:g}" + (f" ({detail})" if detail else ""))


def call_digest(tool: str, params: dict[str, Any]) -> str:
    try:
        canonical = json.dumps({"tool": tool, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    except ValueError:  # an integer past Python's 4,300-digit str() limit: hex has no limit and stays exact
        canonical = json.dumps({"tool": tool, "params": _hex_big_ints(params)}, sort_keys=True,
                               separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _hex_big_ints(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4096:
        return f"int:{value:x}"
    if isinstance(value, dict):
        return {k: _hex_big_ints(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hex_big_ints(v) for v in value]
    return value


Base = tuple[str | None, Counter[str]]  # a run's breached budget rule (if any), its tool calls by digest


@dataclass
class Spent:
    """LLM tokens and cost: one intent's so far in a run (load_spent), or what one step's tracer recorded."""
    tokens: int = 0
    cost_usd: float = 0.0


def load_bases(db: Database, run_id: str, intent_ids: list[str]) -> dict[str, Base]:
    """check_tool_call's counts for many intents of one run, in two statements per 500 ids."""
    breached: dict[str, str] = {}
    calls: dict[str, Counter[str]] = {i: Counter() for i in intent_ids}
    with db.connect() as conn:
        for start in range(0, len(intent_ids), 500):
            chunk = intent_ids[start:start + 500]
            for intent_id, rule in conn.execute(select(policy_decisions.c.intent_id, policy_decisions.c.rule).where(
                    policy_decisions.c.run_id == run_id, policy_decisions.c.intent_id.in_(chunk),
                    policy_decisions.c.rule.like("budget:%"))):
                breached.setdefault(intent_id, rule)
            for intent_id, digest, n in conn.execute(
                    select(tool_calls.c.intent_id, tool_calls.c.call_digest, func.count())
                    .where(tool_calls.c.run_id == run_id, tool_calls.c.intent_id.in_(chunk))
                    .group_by(tool_calls.c.intent_id, tool_calls.c.call_digest)):
                calls[intent_id][str(digest)] += int(n)
    return {i: (breached.get(i), calls[i]) for i in intent_ids}


def load_spent(db: Database, run_id: str, intent_ids: list[str]) -> dict[str, Spent]:
    """check_llm's totals for many intents of one run, in one statement per 500 ids."""
    spent = {i: Spent() for i in intent_ids}
    with db.connect() as conn:
        for start in range(0, len(intent_ids), 500):
            for intent_id, tokens, cost in conn.execute(
                    select(llm_calls.c.intent_id,
                           func.coalesce(func.sum(llm_calls.c.prompt_tokens + llm_calls.c.completion_tokens), 0),
                           func.coalesce(func.sum(llm_calls.c.cost_usd), 0.0))
                    .where(llm_calls.c.run_id == run_id, llm_calls.c.intent_id.in_(intent_ids[start:start + 500]))
                    .group_by(llm_calls.c.intent_id)):
                spent[intent_id] = Spent(int(tokens), float(cost))
    return spent


class RunBudget:
    """One intent's budget within one run. A batch run carries many intents: each has its own caps
    (usage is counted per run and intent), and the wall clock runs from the run's start."""

    def __init__(self, db: Database, limits: Budgets, run_id: str | None, started_at: float | None = None,
                 intent_id: str | None = None, recorded: Counter[str] | None = None,
                 preloaded: Callable[[], Base | None] | None = None,
                 spent: Spent | None = None, preloaded_spent: Callable[[], Spent | None] | None = None) -> None:
        self.db, self.limits, self.run_id, self.intent_id = db, limits, run_id, intent_id
        # A batch step reads every intent's counts at once (load_bases, load_spent) before its tracer
        # records a row; then follows them through what the tracer records (`recorded`, `spent`).
        self._preloaded = preloaded
        self._spent = spent if spent is not None else Spent()
        self._spent_base: Spent | None = preloaded_spent() if preloaded_spent is not None else None
        self.started_at = started_at if started_at is not None else time.time()
        # Tool-call rows recorded through this step's tracer, by call digest (Tracer.recorded_calls).
        self._recorded: Counter[str] = recorded if recorded is not None else Counter()
        self._base: tuple[str | None, Counter[str], Counter[str]] | None = None
        # Calls admitted to run together and not recorded yet (ToolGateway.write_all), by call digest:
        # they count as made, so a group of writes cannot run past the caps.
        self.pending: Counter[str] = Counter()

    def _mine(self, table: Any) -> list[Any]:
        where = [table.c.run_id == self.run_id]
        if self.intent_id is not None:
            where.append(table.c.intent_id == self.intent_id)
        return where

    def usage(self) -> dict[str, float]:
        """What this run has used so far (the evidence attached to a quarantine)."""
        with self.db.connect() as conn:
            calls = conn.execute(select(func.count()).select_from(tool_calls)
                                 .where(*self._mine(tool_calls))).scalar_one()
            tokens, cost = self._llm_used(conn)
        return {"tool_calls": int(calls), "llm_tokens": tokens, "cost_usd": cost,
                "wall_s": round(time.time() - self.started_at, 3)}

    def check_wall(self) -> None:
        elapsed = time.time() - self.started_at
        if elapsed > self.limits.max_wall_s:
            raise BudgetExceeded("max_wall_s", self.limits.max_wall_s, round(elapsed, 3))

    def _llm_used(self, conn: Connection) -> tuple[int, float]:
        tokens, cost = conn.execute(
            select(func.coalesce(func.sum(llm_calls.c.prompt_tokens + llm_calls.c.completion_tokens), 0),
                   func.coalesce(func.sum(llm_calls.c.cost_usd), 0.0))
            .where(*self._mine(llm_calls))).one()
        return int(tokens), float(cost)

    def check_llm(self) -> None:
        """After each LLM call (its usage already traced): tokens and cost of the run so far. The rows
        are written at once (trace.py), so without a preloaded base the totals are read back."""
        if self._spent_base is not None:
            tokens = self._spent_base.tokens + self._spent.tokens
            cost = self._spent_base.cost_usd + self._spent.cost_usd
        else:
            with self.db.connect() as conn:
                tokens, cost = self._llm_used(conn)
        if tokens > self.limits.max_llm_tokens:
            raise BudgetExceeded("max_llm_tokens", self.limits.max_llm_tokens, tokens)
        if cost > self.limits.max_cost_usd:
            raise BudgetExceeded("max_cost_usd", self.limits.max_cost_usd, cost)

    def check_tool_call(self, tool: str, digest: str) -> None:
        """Before each tool call: the run's call count, and how often this exact call was already made.
        The counts are read from the trace tables once per step (this object lives for one step of one
        intent, whose run holds the claim), then followed through the rows this step's tracer records."""
        self.check_wall()
        if self._base is None and (pre := self._preloaded() if self._preloaded else None) is not None:
            self._base = (pre[0], pre[1], Counter())
        if self._base is None:
            with self.db.connect() as conn:
                breached = conn.execute(select(policy_decisions.c.rule).where(
                    *self._mine(policy_decisions), policy_decisions.c.rule.like("budget:%")).limit(1)).scalar()
                per_digest = dict(conn.execute(select(tool_calls.c.call_digest, func.count())
                                               .where(*self._mine(tool_calls)).group_by(tool_calls.c.call_digest)).all())
            self._base = (breached, Counter({str(k): int(v) for k, v in per_digest.items()}),
                          Counter(self._recorded))
        breached, base, seen = self._base
        if breached is not None and self.run_id is not None:
            # Once over a budget, a run stays over it: no other call slips through after the breach.
            raise BudgetExceeded(breached.removeprefix("budget:"), 0, 0, f"this run already broke {breached}")
        since = self._recorded - seen  # rows this step recorded after the counts were read
        calls = sum(base.values()) + sum(since.values()) + sum(self.pending.values())
        same = base[digest] + since[digest] + self.pending[digest]
        if calls >= self.limits.max_tool_calls:
            raise BudgetExceeded("max_tool_calls", self.limits.max_tool_calls, calls + 1, f"next call: {tool}")
        if same >= self.limits.max_repeat_calls:
            raise BudgetExceeded("max_repeat_calls", self.limits.max_repeat_calls, same + 1,
                                 f"loop: {tool} called again with the same arguments")
