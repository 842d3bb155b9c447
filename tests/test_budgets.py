"""Per-run budgets: crossing a cap quarantines the intent, stops the run's writes and keeps the evidence."""

from typing import Any

import dagster as dg
import pytest
from sqlalchemy import func, select

from agent_pipelines.framework.budgets import BudgetExceeded, RunBudget, Spent, load_spent
from agent_pipelines.framework.jobs import build_jobs, run_config, run_tags
from agent_pipelines.framework.policy import Budgets, Mode
from agent_pipelines.framework.tables import escalations, llm_calls, tool_calls, writes
from agent_pipelines.framework.trace import Tracer
from agent_pipelines.framework.workflow import Step
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from resources import build_resources
from tests.helpers import intake, register, state
from tests.llm_server import ScriptedLLM, serve
from tests.test_llm_instructor import BAD_ARITHMETIC, GOOD, llm_project


def with_budgets(wf: InvoiceMatching, **caps: Any) -> InvoiceMatching:
    """The shipped policy pack with tighter caps (the digest changes, as it must)."""
    pack = wf.policy
    wf.__dict__["policy"] = pack.model_copy(update={"budgets": Budgets(**(pack.budgets.model_dump() | caps))})
    return wf


def run(project, wf, intent_id: str, mode: Mode = Mode.FULL) -> dg.ExecuteInProcessResult:  # type: ignore[no-untyped-def]
    return build_jobs(wf).main.execute_in_process(
        run_config=run_config(wf, intent_id), instance=project.instance, raise_on_error=False,
        resources=build_resources(project.settings), tags=run_tags(wf, intent_id, model="offline-rules", mode=mode))


def count(project, table, *where) -> int:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def quarantine_note(project, result: dg.ExecuteInProcessResult) -> str:  # type: ignore[no-untyped-def]
    return next(e.user_message for e in project.instance.all_logs(result.run_id)
                if "trace.quarantine" in (e.user_message or ""))


def test_tool_call_cap_reached_at_commit_quarantines_before_any_of_its_writes(seeded):
    wf = InvoiceMatching()
    intent_id = register(seeded, intake())
    # Count the calls a clean run makes up to its first write (a read_only run of a twin invoice makes
    # the same calls and changes nothing), then allow exactly one write more.
    probe = run(seeded, with_budgets(InvoiceMatching()), register(seeded, intake(invoice_number="INV-P")),
                Mode.READ_ONLY)
    assert probe.success
    with seeded.db.connect() as conn:
        calls = conn.execute(select(tool_calls.c.tool).where(tool_calls.c.run_id == probe.run_id)
                             .order_by(tool_calls.c.id)).scalars().all()
    cap = calls.index("stage_invoice") + 1
    before = count(seeded, writes)
    result = run(seeded, with_budgets(wf, max_tool_calls=cap), intent_id)
    assert not result.success
    assert state(seeded, intent_id) == "quarantined"
    with seeded.db.connect() as conn:
        actions = conn.execute(select(writes.c.action).where(writes.c.intent_id == intent_id)).scalars().all()
        blocked = conn.execute(select(tool_calls.c.tool, tool_calls.c.error).where(
            tool_calls.c.run_id == result.run_id, tool_calls.c.status == "blocked")).all()
    # The writes go together (ToolGateway.write_all): stage_invoice, admitted as the cap-th call, counts
    # while the next one is admitted, which is refused; so none of the three runs.
    assert actions == [] and count(seeded, writes) == before
    assert [b.tool for b in blocked] == ["record_po_invoiced"] and "max_tool_calls" in blocked[0].error
    assert '"budget": "max_tool_calls"' in quarantine_note(seeded, result)
    assert count(seeded, escalations, escalations.c.kind == "budget_exceeded") == 1
    # the evidence stays: every call the run made is in the trace (the cap-1 before the writes, the refusal)
    assert count(seeded, tool_calls, tool_calls.c.run_id == result.run_id) == cap


class LoopingInvoiceMatching(InvoiceMatching):
    """A READ step stuck in a loop: it asks for the same vendor again and again."""

    def read(self, step: Step, intake):  # type: ignore[no-untyped-def]
        for _ in range(20):
            step.tools.read("find_vendor", {"ref": intake.vendor_ref})
        return super().read(step, intake)


def test_the_same_call_again_and_again_is_a_loop_and_quarantines(seeded):
    wf = with_budgets(LoopingInvoiceMatching(), max_repeat_calls=3)
    intent_id = register(seeded, intake())
    result = run(seeded, wf, intent_id)
    assert not result.success and state(seeded, intent_id) == "quarantined"
    with seeded.db.connect() as conn:
        rows = conn.execute(select(tool_calls.c.tool, tool_calls.c.status).where(
            tool_calls.c.run_id == result.run_id).order_by(tool_calls.c.id)).all()
    assert [r.status for r in rows] == ["ok", "ok", "ok", "blocked"]  # the 4th identical call never ran
    assert "loop" in quarantine_note(seeded, result) and count(seeded, writes) == 0
    assert "max_repeat_calls" in str(seeded.intents()[0]["reason"])


def test_llm_tokens_over_budget_quarantine_before_anything_is_written(seeded):
    intent_id = register(seeded, intake())
    wf = with_budgets(InvoiceMatching(), max_llm_tokens=500)  # one completion is 460 tokens, the re-ask doubles it
    with serve(ScriptedLLM([BAD_ARITHMETIC, GOOD])) as llm:
        p = llm_project(seeded, llm.base_url)
        result = build_jobs(wf).main.execute_in_process(
            run_config=run_config(wf, intent_id), instance=seeded.instance, raise_on_error=False,
            resources=build_resources(p.settings), tags=run_tags(wf, intent_id, model="gpt-4o-mini"))
    assert not result.success and state(seeded, intent_id) == "quarantined"
    assert count(seeded, writes) == 0
    with seeded.db.connect() as conn:
        row = conn.execute(select(llm_calls)).mappings().one()
    assert row["prompt_tokens"] + row["completion_tokens"] == 920 and row["output"]["po_number"] == "PO-1"
    assert '"budget": "max_llm_tokens"' in quarantine_note(seeded, result)


def test_cost_cap_counts_too(seeded):
    intent_id = register(seeded, intake())
    wf = with_budgets(InvoiceMatching(), max_cost_usd=0.0001)  # gpt-4o-mini: 920 tokens cost ~0.0002
    with serve(ScriptedLLM([BAD_ARITHMETIC, GOOD])) as llm:
        p = llm_project(seeded, llm.base_url)
        result = build_jobs(wf).main.execute_in_process(
            run_config=run_config(wf, intent_id), instance=seeded.instance, raise_on_error=False,
            resources=build_resources(p.settings), tags=run_tags(wf, intent_id, model="gpt-4o-mini"))
    assert state(seeded, intent_id) == "quarantined" and '"budget": "max_cost_usd"' in quarantine_note(seeded, result)


def test_run_deadline_quarantines_and_is_the_runs_max_runtime_tag(seeded):
    wf = with_budgets(InvoiceMatching(), max_wall_s=0.001)
    intent_id = register(seeded, intake())
    assert run_tags(wf, intent_id, model="m")["dagster/max_runtime"] == "0"
    result = run(seeded, wf, intent_id)
    assert not result.success and state(seeded, intent_id) == "quarantined"
    assert '"budget": "max_wall_s"' in quarantine_note(seeded, result) and count(seeded, writes) == 0


def test_a_quarantined_intent_takes_no_write_even_from_a_direct_gateway_call(seeded):
    from agent_pipelines.framework.gateway import ToolGateway
    from agent_pipelines.framework.tools import ToolBlocked

    wf = with_budgets(LoopingInvoiceMatching(), max_repeat_calls=2)
    intent_id = register(seeded, intake())
    run(seeded, wf, intent_id)
    assert state(seeded, intent_id) == "quarantined"
    gw = ToolGateway.open(wf.tools(), InvoiceMatching().policy, seeded.db, intent_id=intent_id, run_id="later")
    try:
        gw.write("record_po_invoiced", {"po_number": "PO-1", "expected_version": 1, "add_cents": 100},
                 action="record_po_invoiced")
        raise AssertionError("a quarantined intent wrote")
    except ToolBlocked as exc:
        assert "quarantined" in str(exc)
    assert count(seeded, writes) == 0


def test_a_batch_steps_preloaded_llm_totals_decide_as_reading_the_table_back(project):
    """A batch's propose step reads each intent's LLM totals once per chunk (budgets.load_spent) and adds
    what its tracer records: the same totals, and the same breach, as reading llm_calls back."""
    db = project.db

    def tracer(intent_id: str, run_id: str) -> Tracer:
        return Tracer(db, workflow="invoice_matching", intent_id=intent_id, run_id=run_id)

    def call(t: Tracer, prompt: int, completion: int, cost: float) -> None:
        t.llm_call(provider="openai", model="m", prompt_version="v1", attempts=1, prompt_tokens=prompt,
                   completion_tokens=completion, cost_usd=cost, output={"po_number": "PO-1"})

    call(tracer("I-1", "R-1"), 200, 100, 0.001)  # an earlier attempt of this run's propose step
    call(tracer("I-2", "R-1"), 900, 100, 0.01)  # another intent of the run
    call(tracer("I-1", "R-0"), 900, 100, 0.01)  # another run
    spent = load_spent(db, "R-1", ["I-1", "I-2", "I-3"])
    assert spent == {"I-1": Spent(300, 0.001), "I-2": Spent(1000, 0.01), "I-3": Spent()}

    limits = InvoiceMatching().policy.budgets.model_copy(update={"max_llm_tokens": 500})
    step = tracer("I-1", "R-1")
    preloaded = RunBudget(db, limits, "R-1", intent_id="I-1", spent=step.recorded_spent,
                          preloaded_spent=lambda: spent["I-1"])
    read_back = RunBudget(db, limits, "R-1", intent_id="I-1")
    preloaded.check_llm()
    read_back.check_llm()  # 300 of 500
    call(step, 150, 100, 0.002)
    with pytest.raises(BudgetExceeded) as by_preload:
        preloaded.check_llm()
    with pytest.raises(BudgetExceeded) as by_table:
        read_back.check_llm()
    assert (by_preload.value.budget, by_preload.value.observed) == (by_table.value.budget, by_table.value.observed) \
        == ("max_llm_tokens", 550)
