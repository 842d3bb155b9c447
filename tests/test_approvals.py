"""Durable approvals: who may decide, digest binding, the one continuation run, expiry, edits."""

import threading
from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import func, select, update

from agent_pipelines.framework import approvals, review
from agent_pipelines.framework.approvals import DecisionKind, DecisionRefused
from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.tables import approval_requests, escalations, writes
from resources.system_of_record import purchase_orders, scheduled_payments, staged_invoices
from agent_pipelines.framework.reviewers import ReviewerRefused
from tests.helpers import WF, decide_as, intake, register, run_intent, state


def waiting(project, **overrides):  # type: ignore[no-untyped-def]
    """An intent parked in waiting_for_approval (20% over the PO unless overridden); its request id."""
    intent_id = register(project, intake(**({"total_cents": 120_000} | overrides)))
    assert run_intent(project, intent_id).success
    assert state(project, intent_id) == "waiting_for_approval"
    with project.db.connect() as conn:
        approval_id = conn.execute(select(approval_requests.c.approval_id)
                                   .where(approval_requests.c.intent_id == intent_id)).scalar_one()
    return intent_id, approval_id


def decide(project, approval_id, actor, kind=DecisionKind.APPROVE, note=None, **kw):  # type: ignore[no-untyped-def]
    return decide_as(project, WF.policy, approval_id, actor, kind, note=note, **kw)


def n(project, table) -> int:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def continuation_runs(project):  # type: ignore[no-untyped-def]
    return [r for t in project.tick() if t.sensor == "approvals__on_decision" for r in t.runs]


def test_approve_commits_exactly_once_and_records_who_when_and_why(seeded):
    intent_id, approval_id = waiting(seeded)
    after = decide(seeded, approval_id, "alice", note="freight agreed by phone")
    assert after["status"] == "approved"
    runs = continuation_runs(seeded)
    assert len(runs) == 1 and runs[0].success and runs[0].run_key == after["final_decision_id"]
    assert state(seeded, intent_id) == "completed"
    assert (n(seeded, staged_invoices), n(seeded, scheduled_payments), n(seeded, writes)) == (1, 1, 3)
    # the ledger rows point at the approval, whose decision holds identity, time and note
    with seeded.db.connect() as conn:
        assert {r.approval_id for r in conn.execute(select(writes.c.approval_id))} == {approval_id}
        [d] = approvals.decisions(conn, approval_id)
    assert (d["decided_by"], d["decision"], d["note"]) == ("alice", "approve", "freight agreed by phone")
    # ... and the continuation run's log says who approved
    logs = seeded.instance.all_logs(runs[0].run_id)
    assert any("trace.approval_decision" in (e.user_message or "") and '"decided_by": "alice"' in e.user_message
               for e in logs)
    # more ticks, a second approval, or re-running the continuation: still one commit
    assert continuation_runs(seeded) == []
    with pytest.raises(DecisionRefused, match="already approved"):
        decide(seeded, approval_id, "bob")
    job = seeded.definitions.get_job_def("invoice_matching__after_approval")
    rc = {"ops": {"invoice_matching__load_approved": {"config": {"approval_id": approval_id}}}}
    assert job.execute_in_process(run_config=rc, instance=seeded.instance).success
    assert n(seeded, writes) == 3


def test_two_approvers_clicking_at_once_commit_once(seeded):
    intent_id, approval_id = waiting(seeded)
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def click(actor: str) -> None:
        barrier.wait()
        try:
            outcomes[actor] = decide(seeded, approval_id, actor)["status"]
        except DecisionRefused as exc:
            outcomes[actor] = f"refused: {exc}"

    threads = [threading.Thread(target=click, args=(a,)) for a in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o.split(":")[0] for o in outcomes.values()) == ["approved", "refused"]
    assert len(continuation_runs(seeded)) == 1
    assert n(seeded, writes) == 3 and state(seeded, intent_id) == "completed"


def test_deny_writes_nothing_and_records_the_reason(seeded):
    intent_id, approval_id = waiting(seeded)
    with pytest.raises(DecisionRefused, match="needs a reason"):
        decide(seeded, approval_id, "bob", DecisionKind.DENY)
    decide(seeded, approval_id, "bob", DecisionKind.DENY, note="vendor overbilled freight")
    assert continuation_runs(seeded) == []
    intent = IntentStore(seeded.db).get(intent_id)
    assert intent.state == "denied" and intent.reason == "denied by bob: vendor overbilled freight"
    assert n(seeded, writes) == 0


@pytest.mark.parametrize("actor, why", [("dave", "may not decide"), ("mallory", "may not decide")])
def test_who_may_not_decide_is_refused_and_nothing_changes(seeded, actor, why):
    _, approval_id = waiting(seeded)
    with pytest.raises(DecisionRefused, match=why):
        decide(seeded, approval_id, actor)
    with seeded.db.connect() as conn:
        assert approvals.get(conn, approval_id)["status"] == "pending"
        assert approvals.decisions(conn, approval_id) == []


@pytest.mark.parametrize("actor, why", [
    ("agent:agent_pipelines", "agent identity"), ("agent:anything", "agent identity"),
    ("Agent:ops", "agent identity"), ("", "empty identity"), ("alice\u200b", "not a valid reviewer name")])
def test_agents_and_malformed_names_cannot_even_become_reviewers(seeded, actor, why):
    _, approval_id = waiting(seeded)
    with pytest.raises(ReviewerRefused, match=why):
        decide(seeded, approval_id, actor)
    with seeded.db.connect() as conn:
        assert approvals.get(conn, approval_id)["status"] == "pending"
        assert approvals.decisions(conn, approval_id) == []


def test_the_requester_cannot_approve_their_own_request(seeded):
    intent_id = register(seeded, intake(total_cents=120_000))
    req = approvals.request_approval(seeded.db, seeded.approval_key, intent_id=intent_id, workflow=WF.name,
                                     policy_digest=WF.policy.digest, payload={"writes": []}, evidence={},
                                     rationale="", ttl_hours=1, run_id=None, requested_by="alice")
    with pytest.raises(DecisionRefused, match="second person"):
        decide(seeded, req["approval_id"], "alice")


def test_above_the_second_signature_amount_two_distinct_approvers_are_needed(seeded):
    big = intake(po_number="PO-3", total_cents=9_000_000, lines=(intake().lines[0].model_copy(update={
        "sku": "SRV", "description": "Server rack", "quantity": 3, "unit_price_cents": 3_000_000,
        "amount_cents": 9_000_000}),))
    intent_id, approval_id = waiting(seeded, **big.model_dump(include={"po_number", "total_cents", "lines"}))
    first = decide(seeded, approval_id, "alice")
    assert (first["status"], first["required_approvals"], first["approvals"]) == ("pending", 2, ["alice"])
    assert continuation_runs(seeded) == []
    with pytest.raises(DecisionRefused, match="someone else"):
        decide(seeded, approval_id, "alice")
    assert decide(seeded, approval_id, "carol")["status"] == "approved"
    assert len(continuation_runs(seeded)) == 1 and state(seeded, intent_id) == "completed"


def test_a_change_altered_after_the_decision_is_not_committed(seeded):
    intent_id, approval_id = waiting(seeded)
    decide(seeded, approval_id, "alice")
    with seeded.db.begin() as conn:  # someone rewrites the approved payment amount in the database
        req = approvals.get(conn, approval_id)
        tampered = req["approved_payload"]
        tampered["writes"][2]["params"]["amount_cents"] = 1
        conn.execute(update(approval_requests).where(approval_requests.c.approval_id == approval_id)
                     .values(approved_payload=tampered))
    runs = continuation_runs(seeded)
    assert len(runs) == 1 and not runs[0].success
    intent = IntentStore(seeded.db).get(intent_id)
    assert intent.state == "needs_attention" and "not the one that was approved" in intent.reason
    assert n(seeded, writes) == 0
    with seeded.db.connect() as conn:  # escalated at once, and the failed run by the failure sensor on the next tick
        seeded.tick()
        assert sorted(conn.execute(select(escalations.c.kind)).scalars().all()) == ["approval_refused", "run_failed"]


def test_a_record_changed_between_proposal_and_approval_is_not_committed_blindly(seeded):
    intent_id, approval_id = waiting(seeded)
    with seeded.db.begin() as conn:
        conn.execute(update(purchase_orders).where(purchase_orders.c.po_number == "PO-1")
                     .values(status="closed", version=purchase_orders.c.version + 1))
    decide(seeded, approval_id, "alice")
    assert [r.success for r in continuation_runs(seeded)] == [False]
    intent = IntentStore(seeded.db).get(intent_id)
    assert intent.state == "needs_attention" and "changed since they were read" in intent.reason
    assert n(seeded, writes) == 0


def test_expired_requests_end_expired_and_are_escalated(seeded):
    intent_id, approval_id = waiting(seeded)
    with seeded.db.begin() as conn:
        conn.execute(update(approval_requests).values(expires_at=utcnow() - timedelta(minutes=1)))
    with pytest.raises(DecisionRefused, match="expired"):
        decide(seeded, approval_id, "alice")
    housekeeping = [t for t in seeded.tick() if t.sensor == "approvals__on_expiry"][0]
    assert len(housekeeping.runs) == 1 and housekeeping.runs[0].success
    assert state(seeded, intent_id) == "expired"
    with seeded.db.connect() as conn:
        assert approvals.get(conn, approval_id)["status"] == "expired"
        esc = conn.execute(select(escalations)).mappings().one()
    assert (esc["kind"], esc["subject"], esc["intent_id"]) == ("approval_expired", approval_id, intent_id)
    assert n(seeded, writes) == 0


def test_edit_and_approve_commits_the_edited_change_and_keeps_both(seeded):
    intent_id, approval_id = waiting(seeded)
    with pytest.raises(DecisionRefused, match="cannot exceed"):
        review.revise(WF, seeded.db, approval_id, {"pay_amount_cents": 10_000_000})
    with pytest.raises(DecisionRefused, match="unknown proposal field"):
        review.revise(WF, seeded.db, approval_id, {"approve": True})
    edited = review.revise(WF, seeded.db, approval_id, {"pay_amount_cents": 100_000})
    after = decide(seeded, approval_id, "bob", DecisionKind.EDIT, note="pay the PO amount", edited_payload=edited)
    assert after["status"] == "approved" and after["approved_digest"] != after["digest"]
    assert after["payload"]["proposal"]["pay_amount_cents"] is None  # the original is kept beside the edit
    assert [r.success for r in continuation_runs(seeded)] == [True]
    with seeded.db.connect() as conn:
        inv = conn.execute(select(staged_invoices)).mappings().one()
        pay = conn.execute(select(scheduled_payments)).mappings().one()
    assert (inv["amount_cents"], inv["payable_cents"], pay["amount_cents"]) == (120_000, 100_000, 100_000)
    assert state(seeded, intent_id) == "completed"


def test_pending_requests_are_visible_as_an_asset_table(seeded):
    _, approval_id = waiting(seeded)
    result = seeded.definitions.resolve_job_def("approvals__housekeeping").execute_in_process(
        instance=seeded.instance)
    [mat] = result.asset_materializations_for_node("approvals__pending_queue")
    assert mat.metadata["pending"].value == 1
    rows = mat.metadata["queue"].value.records
    assert rows[0].data["approval_id"] == approval_id and rows[0].data["age_hours"] >= 0
    assert mat.asset_key == dg.AssetKey(["approvals", "pending_queue"])
