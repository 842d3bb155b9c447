"""The CI gate on gold cases: every case of every shipped workflow runs through the real workflow (one
batch run per workflow, on this backend) and must end as its gold file says. A change that moves a
decision fails here unless the gold file is updated in the same commit; the second test proves it by
raising the invoice auto-approve limit and watching the gate name exactly the cases that moved."""

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agent_pipelines.cli_evals import eval_settings, run_evals
from agent_pipelines.framework.evals import WorkflowReport, mismatch_lines
from agent_pipelines.framework.gold import gold_of
from agent_pipelines.framework.policy import Rule
from agent_pipelines.workflows import all_workflows
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from tests.llm_server import ScriptedLLM, serve

MIN_CASES = 50
# Policy rules no gold case can reach with the offline proposer, and why (a model's proposal can):
OFFLINE_UNREACHABLE = {
    "invoice_matching": {"short_payment": "the offline proposer always pays the invoice total"},
    "ticket_intake": {"team_unknown": "the offline triage only assigns teams that exist",
                      "dedupe_disagrees": "the offline triage is the dedupe"},
    "access_offboarding": {"no_bulk_changes": "validation rejects a second user before policy sees one"},
    "incident_triage": {},
    "refund": {},
    "crm_hygiene": {},
}


def assert_gold(reports: list[WorkflowReport]) -> None:
    """The gate: any case whose outcome differs from gold fails, naming the case, expected and actual."""
    lines = [line for r in reports for line in mismatch_lines(r)]
    broken = [r.workflow for r in reports if not r.run_success]
    assert not lines and not broken, "gold cases moved:\n" + "\n".join(lines) + (
        f"\nbatch runs failed: {broken}" if broken else "")


def _run(db_url: str, tmp_path: Path, workflows: list) -> list[WorkflowReport]:  # type: ignore[type-arg]
    return run_evals(eval_settings(tmp_path / "state", live_model=False, db_url=db_url), workflows)


def test_every_gold_case_of_every_workflow_matches(db_url, tmp_path):
    workflows = all_workflows()
    reports = _run(db_url, tmp_path, workflows)
    assert [r.workflow for r in reports] == [wf.name for wf in workflows]
    for r in reports:
        assert r.metrics.cases >= MIN_CASES, (r.workflow, r.metrics.cases)
    assert_gold(reports)
    by = {r.workflow: r.metrics for r in reports}
    for m in by.values():
        assert (m.accuracy, m.false_approvals, m.false_rejections) == (1.0, 0, 0)
        assert m.cost_usd == 0.0 and m.cost_per_success_usd == 0.0  # the offline proposer costs nothing
    # every access change waits for a person: nothing is contained, about half the cases go to review
    assert by["access_offboarding"].containment == 0.0 and by["access_offboarding"].review_rate > 0.4
    assert 0.0 < by["invoice_matching"].containment < 1.0 and by["ticket_intake"].containment > 0.5


def test_every_policy_rule_is_covered_by_a_gold_case():
    for wf in all_workflows():
        gold = gold_of(wf)
        named = {c.expected.rule for c in gold.cases} | {t for c in gold.cases for t in c.tags}
        missing = {r.name for r in wf.policy.rules} - named - set(OFFLINE_UNREACHABLE[wf.name])
        assert not missing, f"{wf.name}: no gold case for policy rules {sorted(missing)}"
        states = {c.expected.state for c in gold.cases}
        assert {"waiting_for_approval", "waiting_for_input", "rejected_input"} <= states, (wf.name, states)


def with_auto_limit(cents: int) -> InvoiceMatching:
    """The shipped invoice workflow under a pack whose auto-approve limit is `cents` (a new digest)."""
    wf = InvoiceMatching()
    pack = wf.policy
    rules = tuple(r.model_copy(update={"value": cents}) if r.name == "amount_above_auto_limit" else r
                  for r in pack.rules)
    assert all(isinstance(r, Rule) for r in rules)
    wf.__dict__["policy"] = pack.model_copy(update={"rules": rules})
    return wf


def test_the_gate_fails_on_exactly_the_cases_a_rule_change_moves(db_url, tmp_path):
    """Raising amount_above_auto_limit from 10,000.00 to 20,000.00 (gold not updated): the three invoices
    from 10,000.01 to 20,000.00 that only the amount held now complete without a human, and the two above
    10,000.00 that another rule also holds are now named by that rule. The gate lists those five, no more."""
    wf = with_auto_limit(2_000_000)
    assert wf.policy.digest != InvoiceMatching().policy.digest
    [report] = _run(db_url, tmp_path, [wf])
    assert report.run_success
    with pytest.raises(AssertionError) as failed:
        assert_gold([report])
    moved = {c.name: c for c in report.failed}
    assert sorted(moved) == ["inv-017-amount-just-above-auto-limit", "inv-018-amount-15k", "inv-019-amount-20k",
                             "inv-047-hostile-and-above-limit", "inv-048-variance-and-above-limit"]
    message = str(failed.value)
    for name in moved:
        assert f"invoice_matching/{name}: expected" in message
    for name in ("inv-017-amount-just-above-auto-limit", "inv-018-amount-15k", "inv-019-amount-20k"):
        c = moved[name]
        assert (c.expected.state, c.observed.state) == ("waiting_for_approval", "completed")
        assert [w.committed for w in c.observed.writes] == [True, True, True]  # the writes landed: a false approval
    assert moved["inv-047-hostile-and-above-limit"].observed.rule == "instruction_like_text"
    assert moved["inv-048-variance-and-above-limit"].observed.rule == "variance_above_tolerance_pct"
    assert report.metrics.false_approvals == 3 and report.metrics.passed == report.metrics.cases - 5
    assert "expected waiting_for_approval / amount_above_auto_limit" in message and "got completed" in message


def test_the_cli_prints_the_metrics_and_refuses_a_used_state(tmp_path):
    """`agent-pipelines evals run --workflow W --json` on a fresh SQLite state: exit 0 and the metrics row;
    the same state again is refused (exit 2), since the cases would meet their own earlier records."""
    from agent_pipelines.cli import app

    state = tmp_path / "cli-state"
    runner = CliRunner()
    ok = runner.invoke(app, ["evals", "run", "--workflow", "access_offboarding", "--json", "--state-dir", str(state)])
    assert ok.exit_code == 0, ok.output
    payload = json.loads(ok.stdout.strip().splitlines()[-1])
    [row] = payload["table"]
    assert (row["workflow"], row["accuracy"], row["containment"], payload["failed_cases"]) == (
        "access_offboarding", "100.0%", "0.0%", 0)
    again = runner.invoke(app, ["evals", "run", "--workflow", "access_offboarding", "--state-dir", str(state)])
    assert again.exit_code == 2 and "fresh state" in again.output


class NaiveMatcher(ScriptedLLM):
    """A 'model' behind the local OpenAI-compatible endpoint: it names the first PO of the prompt and always
    proposes the standard two-line match of 1,000.00, right for some invoices and wrong for others."""

    def __init__(self) -> None:
        super().__init__([{}])

    def respond(self, request: dict) -> dict:  # type: ignore[type-arg]
        po = re.search(r"PO-G\d{3}-\d", json.dumps(request["messages"]))
        self.replies = [{"po_number": po and po.group(0), "line_matches": [{"invoice_line": 0, "po_line_no": 1},
                                                                         {"invoice_line": 1, "po_line_no": 2}],
                         "matched_po_amount_cents": 100_000, "variance_cents": 0, "invoice_total_cents": 100_000,
                         "pay_amount_cents": None, "rationale": "both lines match the PO named on the invoice"}]
        return super().respond(request)


def test_a_live_model_is_scored_with_its_cost(db_url, tmp_path, monkeypatch):
    """`--model live`: proposals through the real instructor + openai client against a local endpoint. The
    naive model is right on two gold invoices and wrong on the over-billed one (it matches a line the
    invoice does not have: validation recomputes and rejects it), so the gate names that case, as a false
    rejection, and the cost per successful outcome is the run's LLM cost over the two that passed."""
    wf = InvoiceMatching()
    keep = {"inv-001-exact-two-lines", "inv-038-hostile-ignore-instructions", "inv-036-po-overbilled"}
    gold = gold_of(wf)
    subset = gold.model_copy(update={"cases": tuple(c for c in gold.cases if c.name in keep)})
    with serve(NaiveMatcher()) as llm:
        for k, v in {"PROVIDER": "openai", "BASE_URL": llm.base_url, "MODEL": "gpt-4o-mini", "API_KEY": "unused",
                     "CONCURRENCY": "1"}.items():
            monkeypatch.setenv(f"AGENT_PIPELINES_LLM_{k}", v)
        [report] = run_evals(eval_settings(tmp_path / "state", live_model=True, db_url=db_url), [wf],
                             golds={wf.name: subset})
    assert len(llm.requests) == 3 and report.model == "gpt-4o-mini"
    [wrong] = report.failed
    assert wrong.name == "inv-036-po-overbilled"
    assert (wrong.observed.state, wrong.observed.rule) == ("rejected_input", "proposal_arithmetic")
    m = report.metrics
    assert (m.passed, m.false_rejections, m.false_approvals, m.tokens) == (2, 1, 0, 3 * 460)
    assert m.cost_usd == pytest.approx(3 * (400 * 0.15 + 60 * 0.60) / 1e6)
    assert m.cost_per_success_usd == pytest.approx(m.cost_usd / 2, abs=1e-6)


def test_a_broken_gold_file_fails_loudly(tmp_path, db_url):
    """A gold file that could pass for the wrong reason is refused before anything runs: duplicate names,
    writes expected of a case that changes nothing, a case seeding another system's table."""
    from agent_pipelines.framework.gold import GoldFile, load_cases, load_gold
    from agent_pipelines.framework.runtime import database

    case = {"name": "c-1", "intake": {"source_name": "x.json", "format": "json"},
            "expected": {"state": "rejected_input", "rule": "unknown_vendor"}}
    path = tmp_path / "gold.yaml"
    path.write_text(yaml.safe_dump({"workflow": "invoice_matching", "cases": [case, case]}))
    with pytest.raises(ValueError, match="duplicate case names"):
        load_gold(path)
    writes = {**case, "expected": {**case["expected"], "writes": [{"action": "stage_invoice"}]}}
    path.write_text(yaml.safe_dump({"workflow": "invoice_matching", "cases": [writes]}))
    with pytest.raises(ValueError, match="makes no writes"):
        load_gold(path)
    foreign = GoldFile.model_validate({"workflow": "invoice_matching",
                                       "cases": [{**case, "records": {"tickets": [{"ticket_id": "T-1"}]}}]})
    with pytest.raises(ValueError, match="'tickets' is not one of invoice_matching's system-of-record tables"):
        load_cases(database(db_url), InvoiceMatching(), foreign)
