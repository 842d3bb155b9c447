"""PROPOSE through the real instructor + openai client against a local OpenAI-compatible server."""

from sqlalchemy import select

from agent_pipelines.framework.llm import LLMConfig, Proposer
from agent_pipelines.framework.tables import llm_calls
from agent_pipelines.project import Project
from agent_pipelines.settings import Settings
from agent_pipelines.workflows.invoice_matching.models import MatchProposal
from tests.helpers import intake, register, run_intent, state
from tests.llm_server import ScriptedLLM, serve

GOOD = {"po_number": "PO-1", "line_matches": [{"invoice_line": 0, "po_line_no": 1}, {"invoice_line": 1, "po_line_no": 2}],
        "matched_po_amount_cents": 100_000, "variance_cents": 0, "invoice_total_cents": 100_000,
        "rationale": "PO-1 is named on the invoice; both lines match by SKU"}
# Wrong subtraction: the model validator rejects it, so instructor re-asks with the error.
BAD_ARITHMETIC = {**GOOD, "variance_cents": 5_000}


def llm_project(seeded: Project, base_url: str) -> Project:
    env = {"AGENT_PIPELINES_DB_URL": seeded.settings.db_url, "AGENT_PIPELINES_LLM_PROVIDER": "openai",
           "AGENT_PIPELINES_LLM_MODEL": "gpt-4o-mini", "AGENT_PIPELINES_LLM_BASE_URL": base_url,
           "AGENT_PIPELINES_LLM_API_KEY": "sk-test-local-0000000000000000"}
    p = Project(Settings.from_env(seeded.settings.state_dir, env=env))
    p.__dict__["instance"] = seeded.instance
    return p


def test_proposer_reasks_after_an_invalid_completion():
    with serve(ScriptedLLM([BAD_ARITHMETIC, GOOD])) as llm:
        proposer = Proposer(LLMConfig(provider="openai", model="gpt-4o-mini", base_url=llm.base_url, max_reasks=2))
        proposal, usage = proposer.propose(response_model=MatchProposal,
                                           messages=lambda: [{"role": "user", "content": "match it"}],
                                           offline=lambda: None, prompt_version="t1")  # type: ignore[arg-type,return-value]
    assert proposal.variance_cents == 0 and usage.attempts == 2 and len(llm.requests) == 2
    # the re-ask carries the validation error back to the model
    assert "variance_cents must equal" in json_dump(llm.requests[1]["messages"])
    assert llm.requests[0]["temperature"] == 0
    assert (usage.prompt_tokens, usage.completion_tokens) == (800, 120)  # cumulative over the re-ask
    assert usage.cost_usd > 0


def test_job_through_instructor_records_the_llm_call_and_completes(seeded):
    intent_id = register(seeded, intake())
    with serve(ScriptedLLM([BAD_ARITHMETIC, GOOD])) as llm:
        p = llm_project(seeded, llm.base_url)
        assert run_intent(p, intent_id).success
    assert state(seeded, intent_id) == "completed"
    with seeded.db.connect() as conn:
        row = conn.execute(select(llm_calls)).mappings().one()
    assert (row["provider"], row["model"], row["attempts"]) == ("openai", "gpt-4o-mini", 2)
    assert row["output"]["po_number"] == "PO-1" and row["prompt_version"] == "invoice_match.v1"
    # the invoice reached the model inside the untrusted block
    user = llm.requests[0]["messages"][-1]["content"]
    assert "BEGIN UNTRUSTED INVOICE" in user and "INV-100" in user


def test_model_that_never_returns_a_valid_proposal_fails_the_intent_with_evidence(seeded):
    intent_id = register(seeded, intake())
    with serve(ScriptedLLM([BAD_ARITHMETIC])) as llm:
        p = llm_project(seeded, llm.base_url)
        assert not run_intent(p, intent_id).success
    assert len(llm.requests) == 3  # one call + max_reasks (2)
    assert state(seeded, intent_id) == "failed"
    with seeded.db.connect() as conn:
        row = conn.execute(select(llm_calls)).mappings().one()
    assert row["attempts"] == 3 and "variance_cents" in row["error"]


def test_model_naming_a_po_outside_the_candidates_is_rejected(seeded):
    intent_id = register(seeded, intake())
    rogue = {**GOOD, "po_number": "PO-3"}
    with serve(ScriptedLLM([rogue])) as llm:
        assert run_intent(llm_project(seeded, llm.base_url), intent_id).success
    assert state(seeded, intent_id) == "rejected_input"


def json_dump(obj: object) -> str:
    import json

    return json.dumps(obj)
