"""Approvals you can trust (issue 10): every attack that used to commit a change is refused, and the
audit chain reports the tampering. Each attack runs on SQLite and PostgreSQL (--backend)."""

import re
import stat
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from typer.testing import CliRunner

from agent_pipelines.cli import app
from agent_pipelines.framework import approvals, audit, reviewers
from agent_pipelines.framework.approvals import DecisionRefused
from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.signing import KEY_FILE
from agent_pipelines.framework.tables import approval_decisions, approval_events, approval_requests, escalations, writes
from agent_pipelines.workflows.access_offboarding.workflow import AccessOffboarding
from resources.system_of_record import scheduled_payments
from tests.helpers import WF, decide_as, intake, state
from tests.test_approvals import continuation_runs, n, waiting

BIG = dict(po_number="PO-3", total_cents=9_000_000, lines=(intake().lines[0].model_copy(update={
    "sku": "SRV", "description": "Server rack", "quantity": 3, "unit_price_cents": 3_000_000,
    "amount_cents": 9_000_000}),))


@pytest.fixture
def cli(seeded, monkeypatch):  # type: ignore[no-untyped-def]
    """Run the CLI on the seeded project's state, optionally with a reviewer token in the environment."""
    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", seeded.settings.db_url)

    def run(*args: str, token: str | None = None) -> Any:
        if token is None:
            monkeypatch.delenv(reviewers.TOKEN_ENV, raising=False)
        else:
            monkeypatch.setenv(reviewers.TOKEN_ENV, token)
        return CliRunner().invoke(app, [*args, "--state-dir", str(seeded.settings.state_dir)])

    return run


def token_for(cli, name: str) -> str:  # type: ignore[no-untyped-def]
    result = cli("reviewers", "add", name, "--role", "approver")
    assert result.exit_code == 0, result.output
    return re.search(r"ap_[0-9a-f]{16}_\S+", result.output).group(0)  # type: ignore[union-attr]


def request_row(project, approval_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return approvals.get(conn, approval_id)


def n_decisions(project, approval_id: str) -> int:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return len(approvals.decisions(conn, approval_id))


def escalated(project, approval_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return conn.execute(select(escalations.c.kind).where(escalations.c.subject == approval_id)).scalars().all()


def assert_refused_at_continuation(project, intent_id: str, approval_id: str, why: str) -> None:  # type: ignore[no-untyped-def]
    runs = continuation_runs(project)
    assert len(runs) == 1 and not runs[0].success
    intent = IntentStore(project.db).get(intent_id)
    assert intent.state == "needs_attention" and why in intent.reason, intent.reason
    assert n(project, writes) == 0 and n(project, scheduled_payments) == 0
    assert "approval_refused" in escalated(project, approval_id)
    with project.db.connect() as conn:
        kinds = conn.execute(select(approval_events.c.kind).where(approval_events.c.approval_id == approval_id)
                             .order_by(approval_events.c.seq)).scalars().all()
    assert kinds[-2:] == ["refused", "escalated"]


def assert_audit_broken(project, cli, why: str) -> None:  # type: ignore[no-untyped-def]
    report = audit.verify(project.db, project.approval_key)
    assert not report.intact and why in (report.problem or ""), report.line()
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "BROKEN" in result.output and why in result.output, result.output


def assert_audit_intact(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("audit", "verify")
    assert result.exit_code == 0 and re.fullmatch(r"audit: \d+ events, chain intact\n", result.output), result.output


# -- attack 1: `--as` named the approver; now the token does ---------------------------------------------------
def test_attack1_one_operator_cannot_be_two_approvers(seeded, cli):
    intent_id, approval_id = waiting(seeded, **BIG)
    alice, bob = token_for(cli, "alice"), token_for(cli, "bob")
    no_token = cli("approvals", "approve", approval_id, "--as", "alice")
    assert no_token.exit_code != 0 and "no valid reviewer token" in no_token.output
    assert n_decisions(seeded, approval_id) == 0
    assert cli("approvals", "approve", approval_id, token="ap_0123456789abcdef_" + "x" * 43).exit_code != 0
    # alice's token approves as alice whatever --as says would have been; a mismatching --as changes nothing
    mismatch = cli("approvals", "approve", approval_id, "--as", "bob", token=alice)
    assert mismatch.exit_code != 0 and "does not match" in mismatch.output
    assert n_decisions(seeded, approval_id) == 0
    first = cli("approvals", "approve", approval_id, "--as", "alice", token=alice)
    assert first.exit_code == 0 and "1 of 2 approvals (alice)" in first.output, first.output
    for claimed in ("bob", None):  # the same operator again, with or without another name
        again = cli("approvals", "approve", approval_id, *(["--as", claimed] if claimed else []), token=alice)
        assert again.exit_code != 0
    assert request_row(seeded, approval_id)["status"] == "pending" and n_decisions(seeded, approval_id) == 1
    assert continuation_runs(seeded) == []
    # a second person with their own token completes it
    second = cli("approvals", "approve", approval_id, token=bob)
    assert second.exit_code == 0 and "approved" in second.output
    assert [r.success for r in continuation_runs(seeded)] == [True] and state(seeded, intent_id) == "completed"
    with seeded.db.connect() as conn:
        assert sorted(d["decided_by"] for d in approvals.decisions(conn, approval_id)) == ["alice", "bob"]
    assert_audit_intact(cli)


# -- attack 2: a decision row and an approved status written in SQL ----------------------------------------------
def test_attack2_forged_decision_row_is_refused_at_the_continuation(seeded, cli):
    intent_id, approval_id = waiting(seeded)
    req = request_row(seeded, approval_id)
    with seeded.db.begin() as conn:
        conn.execute(insert(approval_decisions).values(
            decision_id="dec-forged", approval_id=approval_id, decided_by="alice", decision="approve",
            digest_seen=req["digest"], at=utcnow()))
        conn.execute(update(approval_requests).where(approval_requests.c.approval_id == approval_id).values(
            status="approved", final_decision_id="dec-forged", approved_payload=req["payload"],
            approved_digest=req["digest"], decided_at=utcnow()))
    assert_refused_at_continuation(seeded, intent_id, approval_id, "no valid signature")
    assert_audit_broken(seeded, cli, f"request {approval_id} is approved but no chained decision made it so")


# -- attack 3: approved_payload, approved_digest and digest_seen rewritten together ----------------------------
def test_attack3_consistent_rewrite_of_the_approved_change_is_refused(seeded, cli):
    intent_id, approval_id = waiting(seeded)
    decide_as(seeded, WF.policy, approval_id, "alice")
    req = request_row(seeded, approval_id)
    tampered = req["approved_payload"]
    [pay] = [w for w in tampered["writes"] if w["tool"] == "schedule_payment"]
    pay["params"]["amount_cents"] = 6_666_600  # 66,666.00
    digest = approvals.request_digest(req, tampered)  # the attacker knows the scheme: everything agrees
    with seeded.db.begin() as conn:
        conn.execute(update(approval_requests).where(approval_requests.c.approval_id == approval_id).values(
            approved_payload=tampered, approved_digest=digest))
        conn.execute(update(approval_decisions).where(approval_decisions.c.approval_id == approval_id).values(
            digest_seen=digest))
    assert_refused_at_continuation(seeded, intent_id, approval_id, "no valid signature")
    assert_audit_broken(seeded, cli, "the approved change is not the one the chained decision approved")


# -- attack 4: a forged decision by a non-approver plus one real approval ----------------------------------------
def test_attack4_forged_earlier_decision_does_not_count_towards_two_persons(seeded, cli):
    intent_id, approval_id = waiting(seeded, **BIG)
    req = request_row(seeded, approval_id)
    with seeded.db.begin() as conn:
        conn.execute(insert(approval_decisions).values(
            decision_id="dec-forged-dave", approval_id=approval_id, decided_by="dave", decision="approve",
            digest_seen=req["digest"], at=utcnow()))
    with pytest.raises(DecisionRefused, match="needs attention.*no valid signature"):
        decide_as(seeded, WF.policy, approval_id, "alice")
    assert request_row(seeded, approval_id)["status"] == "pending" and n_decisions(seeded, approval_id) == 1
    assert "approval_refused" in escalated(seeded, approval_id)
    assert continuation_runs(seeded) == [] and n(seeded, writes) == 0
    assert_audit_broken(seeded, cli, "decision dec-forged-dave (dave on")


def test_attack4_forged_second_signature_is_refused_at_the_continuation(seeded, cli):
    intent_id, approval_id = waiting(seeded, **BIG)
    assert decide_as(seeded, WF.policy, approval_id, "alice")["status"] == "pending"
    req = request_row(seeded, approval_id)
    with seeded.db.begin() as conn:  # a non-approver's row that "completes" the two-person rule
        conn.execute(insert(approval_decisions).values(
            decision_id="dec-forged-dave", approval_id=approval_id, decided_by="dave", decision="approve",
            digest_seen=req["digest"], at=utcnow()))
        conn.execute(update(approval_requests).where(approval_requests.c.approval_id == approval_id).values(
            status="approved", final_decision_id="dec-forged-dave", approved_payload=req["payload"],
            approved_digest=req["digest"], required_approvals=1))
    assert_refused_at_continuation(seeded, intent_id, approval_id, "dec-forged-dave by dave has no valid signature")
    assert_audit_broken(seeded, cli, f"request {approval_id} differs from its requested event")


# -- attack 5: the evidence (intake, context) rewritten after the approval ---------------------------------------
@pytest.mark.parametrize("part", ["intake", "context"])
def test_attack5_rewritten_evidence_is_refused(seeded, cli, part):
    intent_id, approval_id = waiting(seeded)
    decide_as(seeded, WF.policy, approval_id, "alice")
    evidence = request_row(seeded, approval_id)["evidence"]
    if part == "intake":
        evidence["intake"]["invoice_number"] = "INV-EVIL"
    else:
        evidence["context"]["vendor"]["payment_account"] = "NL91ABNA0417164300"
    with seeded.db.begin() as conn:
        conn.execute(update(approval_requests).where(approval_requests.c.approval_id == approval_id)
                     .values(evidence=evidence))
    assert_refused_at_continuation(seeded, intent_id, approval_id, "not the one that was approved")
    assert_audit_broken(seeded, cli, f"request {approval_id}: its change or evidence was rewritten")


# -- attack 6: decide() with another workflow's policy ------------------------------------------------------------
def test_attack6_decide_refuses_a_request_of_another_workflow(seeded, cli):
    access = AccessOffboarding()
    req = approvals.request_approval(
        seeded.db, seeded.approval_key, intent_id="access:R-9", workflow=access.name, policy_digest=access.policy.digest,
        payload={"writes": []}, evidence={"facts": {}}, rationale="", ttl_hours=1, run_id=None)
    with pytest.raises(DecisionRefused, match="is a access_offboarding request; the invoice_matching policy"):
        decide_as(seeded, WF.policy, req["approval_id"], "alice")  # alice approves invoices, not access changes
    assert request_row(seeded, req["approval_id"])["status"] == "pending" and n_decisions(seeded, req["approval_id"]) == 0
    with pytest.raises(DecisionRefused, match="may not decide"):
        decide_as(seeded, access.policy, req["approval_id"], "alice")
    assert decide_as(seeded, access.policy, req["approval_id"], "omar")["status"] == "approved"
    assert_audit_intact(cli)


# -- positive and edge cases ---------------------------------------------------------------------------------------
def test_token_approves_and_only_its_hash_is_stored(seeded, cli):
    intent_id, approval_id = waiting(seeded)
    alice = token_for(cli, "alice")
    with seeded.db.connect() as conn:
        row = conn.execute(select(reviewers.reviewers)).mappings().one()
    assert row["token_hash"].startswith("scrypt$") and alice.split("_", 2)[2] not in row["token_hash"]
    assert alice.split("_")[1] == row["token_id"]
    key_file = seeded.settings.state_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    result = cli("approvals", "approve", approval_id, "--note", "freight agreed", token=alice)
    assert result.exit_code == 0, result.output
    with seeded.db.connect() as conn:
        [d] = approvals.decisions(conn, approval_id)
    assert d["decided_by"] == "alice" and d["reviewer_token_id"] == row["token_id"] and len(d["signature"]) == 64
    assert [r.success for r in continuation_runs(seeded)] == [True] and state(seeded, intent_id) == "completed"
    result = cli("audit", "verify")
    assert result.exit_code == 0 and "chain intact" in result.output
    with seeded.db.connect() as conn:
        kinds = conn.execute(select(approval_events.c.kind).order_by(approval_events.c.seq)).scalars().all()
    assert kinds == ["requested", "reviewer_added", "decided", "continuation_committed"]


def test_a_revoked_token_is_refused_and_decides_nothing(seeded, cli):
    _, approval_id = waiting(seeded)
    alice = token_for(cli, "alice")
    assert cli("reviewers", "revoke", "alice").exit_code == 0
    result = cli("approvals", "approve", approval_id, token=alice)
    assert result.exit_code != 0 and "revoked" in result.output
    assert request_row(seeded, approval_id)["status"] == "pending" and n_decisions(seeded, approval_id) == 0
    listed = cli("reviewers", "list")
    assert listed.exit_code == 0 and "alice" in listed.output and alice.split("_", 2)[2] not in listed.output
    assert token_for(cli, "alice") != alice  # re-issued: a new token, the old one stays dead
    assert cli("approvals", "approve", approval_id, token=alice).exit_code != 0


def test_a_reviewer_row_inserted_in_sql_does_not_authenticate(seeded):
    _, token = reviewers.add(seeded.db, seeded.approval_key, "alice")
    with seeded.db.begin() as conn:  # copy alice's row under a new name: the seal covers the name
        row = dict(conn.execute(select(reviewers.reviewers)).mappings().one())
        conn.execute(update(reviewers.reviewers).values(name="carol"))
    with pytest.raises(reviewers.ReviewerRefused, match="not valid"):
        reviewers.authenticate(seeded.db, seeded.approval_key, token)
    assert row["name"] == "alice"


def test_a_tampered_or_truncated_chain_is_reported_with_its_seq(seeded, cli):
    _, approval_id = waiting(seeded)
    decide_as(seeded, WF.policy, approval_id, "alice")
    assert_audit_intact(cli)
    with seeded.db.begin() as conn:
        ev = conn.execute(select(approval_events).where(approval_events.c.kind == "decided")).mappings().one()
        conn.execute(update(approval_events).where(approval_events.c.seq == ev["seq"])
                     .values(payload={**ev["payload"], "decided_by": "bob"}))
    result = cli("audit", "verify")
    assert result.exit_code == 1 and f"BROKEN at seq {ev['seq']}: hash mismatch" in result.output, result.output
    with seeded.db.begin() as conn:
        conn.execute(update(approval_events).where(approval_events.c.seq == ev["seq"]).values(payload=ev["payload"]))
        last = conn.execute(select(approval_events.c.seq).order_by(approval_events.c.seq.desc())).scalars().first()
        conn.execute(approval_events.delete().where(approval_events.c.seq == last))
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "events were removed" in result.output, result.output


def test_the_signing_key_comes_from_the_environment_when_set(seeded, monkeypatch):
    from agent_pipelines.framework.signing import KEY_ENV, KeyUnavailable, load_key

    monkeypatch.setenv(KEY_ENV, "k" * 40)
    env_key = load_key(seeded.settings.state_dir)
    assert env_key.key_id != load_key(seeded.settings.state_dir, env={}).key_id
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(KeyUnavailable):
        load_key(seeded.settings.state_dir)
