"""The README's "Run the demo through a model": `agent-pipelines llm-server` serves the committed demo
recording, the demo runs through the real instructor + openai client against it, and ends exactly
where the offline demo ends. Also: the committed recording is what a fresh offline demo records (the
request digests are stable), and a request the recording does not hold is refused, never answered."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agent_pipelines.bench_llm import RecordedLLM, serve
from agent_pipelines.cli import app
from agent_pipelines.cli_llm import DEMO_RECORDING
from agent_pipelines.framework import recording
from agent_pipelines.framework.llm import LLMConfig, ProposalFailed, Proposer
from agent_pipelines.framework.tables import intents, llm_calls
from agent_pipelines.project import REPO_ROOT
from agent_pipelines.workflows import all_workflows
from agent_pipelines.workflows.invoice_matching.models import MatchProposal
from tests.conftest import fresh_database


def run_cli(*args: str) -> dict:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def outcome(db_url: str) -> tuple[dict[str, str], list[dict]]:
    from agent_pipelines.framework.runtime import database

    with database(db_url).connect() as conn:
        states = {r.intent_id: r.state for r in conn.execute(select(intents.c.intent_id, intents.c.state))}
        calls = [dict(r) for r in conn.execute(select(llm_calls).order_by(llm_calls.c.id)).mappings()]
    return states, calls


@pytest.fixture
def llm_server() -> Iterator[str]:
    """`agent-pipelines llm-server --port 0 --json` as a user starts it (the committed demo recording);
    its first line names the endpoint."""
    proc = subprocess.Popen([sys.executable, "-c", "from agent_pipelines.cli import main; main()",
                             "llm-server", "--port", "0", "--json"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["models"] == ["offline-rules"] and info["responses"] == len(recording.load(DEMO_RECORDING))
        yield info["base_url"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tool_schema_is_what_instructor_sends():
    from instructor import openai_schema

    for wf in all_workflows():
        assert recording.tool_schema(wf.proposal_model) == openai_schema(wf.proposal_model).openai_schema, wf.name


# Two demos (offline, then through the server): about a minute on a 2-core machine. What it checks (the
# recording's digests, the model path ending as the offline one) is the same on either database.
@pytest.mark.sqlite_leg
@pytest.mark.timeout(900)
def test_demo_through_the_llm_server_ends_as_the_offline_demo(project, backend, tmp_path, monkeypatch, llm_server):
    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", project.settings.db_url)
    offline = run_cli("demo", "--state-dir", str(project.settings.state_dir))
    offline_states, offline_calls = outcome(project.settings.db_url)
    assert {c["provider"] for c in offline_calls} == {"offline"}

    # The committed recording is exactly what this offline demo records: its digests are stable.
    exported = tmp_path / "demo.jsonl"
    run_cli("recording", "export", "--state-dir", str(project.settings.state_dir), "--out", str(exported))
    assert recording.load(exported) == recording.load(DEMO_RECORDING)
    digests = {e.digest for e in recording.load(DEMO_RECORDING)}

    # Through the model path: a fresh state (database and Dagster instance), the openai provider.
    state = tmp_path / "model-path"
    state.mkdir()
    with fresh_database(backend, state, prefix="ap_model_path") as db_url:
        for name, value in {"AGENT_PIPELINES_DB_URL": db_url, "DAGSTER_HOME": str(state / "dagster"),
                            "AGENT_PIPELINES_LLM_PROVIDER": "openai", "AGENT_PIPELINES_LLM_BASE_URL": llm_server,
                            "AGENT_PIPELINES_LLM_MODEL": "offline-rules", "AGENT_PIPELINES_LLM_API_KEY": "local"}.items():
            monkeypatch.setenv(name, value)
        served = run_cli("demo", "--state-dir", str(state))
        states, calls = outcome(db_url)

    assert states == offline_states  # every intent ends in the same state
    for key in ("intents", "by_workflow", "writes"):
        assert served[key] == offline[key], key
    # the six workflows' demo: 5 batch runs (one per record or inbox sensor) and the CRM scan's 8 runs
    assert (served["writes"], served["duplicate_writes"], served["failed_runs"], served["runs"]) == (160, 0, 0, 13)
    assert served["intents"] == {"completed": 90, "denied": 4, "rejected_input": 37, "waiting_for_approval": 28,
                                 "waiting_for_input": 21}
    # Every proposal came from the server through instructor, with usage, and is itself recorded.
    assert len(calls) == len(offline_calls)
    assert {(c["provider"], c["model"], c["error"], c["attempts"]) for c in calls} == {("openai", "offline-rules", None, 1)}
    assert all(c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 for c in calls)
    assert {c["request_digest"] for c in calls} == digests
    assert all(c["response"]["usage"]["prompt_tokens"] == c["prompt_tokens"] for c in calls)
    by_digest = {c["request_digest"]: c["output"] for c in offline_calls}
    assert all(c["output"] == by_digest[c["request_digest"]] for c in calls)  # the same proposals


def test_a_request_the_recording_does_not_hold_is_refused_with_its_digest():
    entries = recording.load(DEMO_RECORDING)
    with serve(RecordedLLM(entries)) as llm:
        proposer = Proposer(LLMConfig(provider="openai", model="offline-rules", base_url=llm.base_url, max_reasks=0))
        messages = [{"role": "user", "content": "match invoice INV-1 to a PO"}]
        with pytest.raises(ProposalFailed) as failed:
            proposer.propose(response_model=MatchProposal, messages=lambda: messages,
                             offline=lambda: None, prompt_version="t")  # type: ignore[arg-type,return-value]
        digest = recording.request_digest("offline-rules", messages, recording.tool_schema(MatchProposal))
        assert llm.unknown == [digest] and digest in str(failed.value)
        assert failed.value.usage.request_digest == digest and failed.value.usage.response is None
        # Over plain HTTP: 404 with the digest; not a TOOLS-mode request: 422.
        unknown = {"model": "gpt-4o-mini", "messages": messages, "tools": [{"type": "function", "function":
                                                                           recording.tool_schema(MatchProposal)}]}
        r = httpx.post(f"{llm.base_url}/chat/completions", json=unknown)
        assert r.status_code == 404 and r.json()["error"]["code"] == "recording_not_found"
        assert recording.wire_digest(unknown) in r.json()["error"]["message"]
        r = httpx.post(f"{llm.base_url}/chat/completions", json={"model": "offline-rules", "messages": messages})
        assert r.status_code == 422 and "TOOLS" in r.json()["error"]["message"]
        assert httpx.get(f"{llm.base_url}/models").json()["data"][0]["id"] == "offline-rules"


def test_a_live_call_records_its_last_raw_response_redacted_and_its_digest(seeded):
    from tests.helpers import WF, intake, register, run_intent
    from tests.llm_server import ScriptedLLM
    from tests.test_llm_instructor import BAD_ARITHMETIC, llm_project

    leaky = {**BAD_ARITHMETIC, "rationale": "pay it to DE89370400440532013000 as the memo says"}
    intent_id = register(seeded, intake())
    with serve(ScriptedLLM([leaky])) as llm:  # never valid: the intent fails after the re-asks
        assert not run_intent(llm_project(seeded, llm.base_url), intent_id).success
    with seeded.db.connect() as conn:
        row = conn.execute(select(llm_calls)).mappings().one()
    assert row["error"] and row["attempts"] == 3
    # the digest of the first request as it went over the wire, and the last answer as the model gave it
    assert row["request_digest"] == recording.wire_digest(llm.requests[0])
    args = row["response"]["message"]["tool_calls"][0]["function"]["arguments"]
    assert args["variance_cents"] == 5_000 and row["response"]["message"]["tool_calls"][0]["function"]["name"] == WF.proposal_model.__name__
    assert "DE89370400440532013000" not in json.dumps(row["response"]) and "[REDACTED:" in args["rationale"]
