"""refund end to end: refund_requests rows -> sensor -> intents -> real Dagster runs against the local
payments service (its own state counts the refunds) -> approval -> continuation run, on the selected
backend. The crash test loses the refund's answer after the service applied it and lets the recovery
sweeper finish the intent through the same code location (`project.tick()`, as the daemon would)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from agent_pipelines.definitions import build_definitions, shipped_workflows
from agent_pipelines.framework import controls
from agent_pipelines.framework.intents import IntentStore, record_intent_id
from agent_pipelines.framework.jobs import WorkflowJobs, build_jobs
from agent_pipelines.framework.ledger import WriteStatus, duplicate_ledger_writes
from agent_pipelines.framework.policy import Mode
from agent_pipelines.framework.recovery import pending_external
from agent_pipelines.framework.tables import approval_requests, shadow_writes, writes
from agent_pipelines.project import Project
from agent_pipelines.services.harness import Served, serve
from agent_pipelines.services.payments import payments_app
from agent_pipelines.workflows.refund import demo_data
from agent_pipelines.workflows.refund.workflow import Refund
from resources.refunds import refund_notices, refund_requests
from tests.helpers import decide_as
from tests.support import wait_until

WF = Refund()
SENSOR = "refund__on_new_request"


@pytest.fixture
def payments(monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    """The local payments service on a free port, with the demo orders (and their earlier refunds)."""
    with serve(payments_app()) as served:
        served.admin("/_admin/orders", demo_data.orders())
        monkeypatch.setenv("AGENT_PIPELINES_PAYMENTS_URL", served.base_url)
        yield served


def add_request(project: Project, request_id: str, text: str, *, order_id: str | None = None,
                amount_cents: int | None = None, reason: str | None = None) -> str:
    """Insert a row as the support form does; returns the intent id the sensor gives it."""
    with project.db.begin() as conn:
        conn.execute(refund_requests.insert().values(
            request_id=request_id, version=1, order_id=order_id, customer_email="c@mail.example",
            amount_cents=amount_cents, reason=reason, text=text,
            submitted_at=datetime(2026, 11, 28, 9, 0, tzinfo=UTC)))
    return record_intent_id(WF.name, request_id, 1)


def tick_until_idle(project: Project) -> list[Any]:
    runs: list[Any] = []
    for _ in range(5):
        new = [r for t in project.tick() for r in t.runs]
        if not new:
            return runs
        runs += new
    raise AssertionError("the sensors kept requesting runs")


def intent(project: Project, intent_id: str) -> Any:
    return IntentStore(project.db).get(intent_id)


def refunds_for(served: Served, order_id: str) -> list[dict[str, Any]]:
    import httpx

    return httpx.get(f"{served.base_url}/orders/{order_id}/refunds", timeout=10).json()["data"]


def ledger(project: Project, intent_id: str) -> list[dict[str, Any]]:
    with project.db.connect() as conn:
        return [dict(r) for r in conn.execute(select(writes).where(writes.c.intent_id == intent_id)
                                              .order_by(writes.c.id)).mappings()]


def duplicates(project: Project) -> int:
    with project.db.connect() as conn:
        return WF.duplicate_writes(conn) + duplicate_ledger_writes(conn)


# -- the demo's requests: every end state, counted from the service's own state -------------------------
def test_demo_requests_reach_completed_waiting_and_rejected_with_one_refund_each(project, payments):
    before = payments.effects()
    with project.db.begin() as conn:
        demo_data.seed_refund_requests(conn)
    runs = tick_until_idle(project)
    assert runs and all(r.success for r in runs)
    expected = demo_data.expected_outcomes()
    states = {r["source_ref"].split(":", 1)[1].split("@")[0]: r for r in project.intents(WF.name)}
    assert set(states) == set(expected)
    for request_id, category in expected.items():
        row = states[request_id]
        assert row["state"] == demo_data.EXPECTED_STATE[category], (request_id, row["state"], row["reason"])
        rule = demo_data.expected_rules().get(request_id)
        if rule and row["state"] not in ("completed",):
            assert rule in (row["reason"] or ""), (request_id, row["reason"])
    assert {r["state"] for r in states.values()} >= {"completed", "waiting_for_approval", "rejected_input", "denied"}

    completed = [rid for rid, c in expected.items() if demo_data.EXPECTED_STATE[c] == "completed"]
    after = payments.effects()
    assert after["effects"] - before["effects"] == len(completed) and after["duplicates"] == 0
    for rid in completed:  # one refund per request in the service, its ledger row committed
        order = {f"RR-{n:04d}": r for n, r in enumerate(demo_data.REQUESTS, start=1)}[rid].order_id or "ORD-1013"
        mine = [r for r in refunds_for(payments, order) if r["reference"] == rid]
        assert len(mine) == 1, (rid, mine)
        rows = ledger(project, record_intent_id(WF.name, rid, 1))
        assert [(r["action"], r["status"]) for r in rows] == [("refund", "committed"), ("notice", "committed")]
        assert rows[0]["target"] == f"payments.refunds:{mine[0]['id']}"
    # the rejected ones (above the remaining amount, the duplicate request, ...) refunded nothing
    assert refunds_for(payments, "ORD-1005") == [] and len(refunds_for(payments, "ORD-1007")) == 1
    assert "80.00 is more than is left" in states["RR-0005"]["reason"]
    assert states["RR-0008"]["reason"].startswith("duplicate_request: request RR-0007 already asks")
    # the customer notifications are drafts, never sent: the pack does not allow sending
    with project.db.connect() as conn:
        notices = conn.execute(select(refund_notices.c.request_id, refund_notices.c.status)).all()
    assert sorted(notices) == sorted((rid, "draft") for rid in completed)
    st = project.status()
    assert st.duplicate_writes == 0 and duplicates(project) == 0
    assert st.by_workflow[WF.name]["completed"] == len(completed)


# -- approval above the threshold, then the continuation applies it once ---------------------------------
def test_a_refund_above_the_threshold_waits_for_approval_then_applies_once(project, payments):
    intent_id = add_request(project, "R-big", "The sofa arrived damaged.", order_id="ORD-1003")
    tick_until_idle(project)
    it = intent(project, intent_id)
    assert it.state == "waiting_for_approval" and "amount_above_approval_threshold" in it.reason
    assert refunds_for(payments, "ORD-1003") == [] and payments.effects()["writes_seen"] == 0
    with project.db.connect() as conn:
        req = conn.execute(select(approval_requests).where(approval_requests.c.intent_id == intent_id)).mappings().one()
    assert [w["tool"] for w in req["payload"]["writes"]] == ["create_refund", "draft_refund_notice"]
    assert req["payload"]["writes"][0]["params"]["amount_cents"] == 25_000

    decide_as(project, WF.policy, req["approval_id"], "gus", note="photos confirm the damage")
    runs = tick_until_idle(project)
    assert [r.success for r in runs] == [True]
    assert intent(project, intent_id).state == "completed"
    [refund] = refunds_for(payments, "ORD-1003")
    assert (refund["amount_cents"], refund["reference"], refund["reason"]) == (25_000, "R-big", "damaged")
    rows = ledger(project, intent_id)
    assert [(r["action"], r["status"], r["approval_id"]) for r in rows] == [
        ("refund", "committed", req["approval_id"]), ("notice", "committed", req["approval_id"])]
    assert tick_until_idle(project) == [] and len(refunds_for(payments, "ORD-1003")) == 1
    assert duplicates(project) == 0


def test_above_the_remaining_amount_and_a_duplicate_request_are_rejected(project, payments):
    too_much = add_request(project, "R-1", "Broken lamp, refund 45.00.", order_id="ORD-1002", amount_cents=4_500)
    first = add_request(project, "R-2", "Broken lamp.", order_id="ORD-1002", amount_cents=1_000)
    again = add_request(project, "R-3", "Broken lamp (sent twice).", order_id="ORD-1002", amount_cents=1_000)
    assert all(r.success for r in tick_until_idle(project))
    t = intent(project, too_much)
    # ORD-1002 captured 45.00 and 15.00 were refunded by hand before: 30.00 are left
    assert t.state == "rejected_input" and t.reason.startswith("amount_exceeds_remaining: 45.00 is more than")
    assert intent(project, first).state == "completed"
    d = intent(project, again)
    assert d.state == "rejected_input" and d.reason.startswith("duplicate_request: request R-2")
    assert [r["reference"] for r in refunds_for(payments, "ORD-1002")] == ["manual-ORD-1002-0", "R-2"]
    assert ledger(project, too_much) == [] and ledger(project, again) == []


# -- the kill switch and read_only mode: nothing reaches the service -------------------------------------
def test_read_only_mode_and_the_kill_switch_make_no_effect_in_the_service(project, payments):
    controls.set_mode(project.db, WF.name, Mode.READ_ONLY, actor="lead")
    dry = add_request(project, "R-ro", "Parcel never arrived.", order_id="ORD-1011", amount_cents=1_000)
    assert all(r.success for r in tick_until_idle(project))
    it = intent(project, dry)
    assert it.state == "completed" and it.reason.startswith("read_only mode, nothing written")
    assert payments.effects()["writes_seen"] == 0 and refunds_for(payments, "ORD-1011") == []
    with project.db.connect() as conn:
        shadow = conn.execute(select(shadow_writes.c.tool, shadow_writes.c.mode).where(
            shadow_writes.c.intent_id == dry).order_by(shadow_writes.c.id)).all()
        assert conn.execute(select(refund_notices)).first() is None
    assert [tuple(s) for s in shadow] == [("create_refund", "read_only"), ("draft_refund_notice", "read_only")]
    assert ledger(project, dry) == []

    controls.set_mode(project.db, WF.name, Mode.FULL, actor="lead")
    controls.set_kill_switch(project.db, on=True, actor="oncall", tool="create_refund", reason="payments incident")
    parked = add_request(project, "R-k", "The mug is broken.", order_id="ORD-1001")
    assert all(r.success for r in tick_until_idle(project))
    assert intent(project, parked).state == "parked"
    assert payments.effects()["writes_seen"] == 0 and refunds_for(payments, "ORD-1001") == []
    assert ledger(project, parked) == []

    # Released: the parked intent refunds once.
    controls.set_kill_switch(project.db, on=False, actor="oncall", tool="create_refund")
    assert all(r.success for r in tick_until_idle(project))
    assert intent(project, parked).state == "completed"
    assert [r["reference"] for r in refunds_for(payments, "ORD-1001")] == ["R-k"]
    assert payments.effects()["duplicates"] == 0 and duplicates(project) == 0


# -- a crash between the refund call and its record, recovered by the sweeper through Dagster ------------
class ShortRefund(Refund):
    """The shipped workflow with one short attempt at the refund call: a lost answer fails the run."""

    refund_attempts, refund_timeout_s = 1, 1.0


def with_workflow(project: Project, wf: Refund, **settings: Any) -> None:
    """The project's code location with `wf` in place of the shipped refund workflow (same wiring)."""
    project.settings = project.settings.model_copy(update=settings)
    shipped = shipped_workflows()
    shipped[wf.name] = WorkflowJobs(wf, build_jobs(wf))
    project.__dict__["definitions"] = build_definitions(project.settings, shipped)


def test_a_lost_answer_after_the_effect_is_reconciled_by_the_sweeper_with_one_refund(project, payments):
    with_workflow(project, ShortRefund())
    intent_id = add_request(project, "R-crash", "The mug is broken.", order_id="ORD-1001")
    before = payments.effects()["effects"]
    payments.faults(after_effect="lose", after_effect_count=1)
    [run] = [r for t in project.tick() for r in t.runs]
    assert not run.success  # the refund landed in the service, its answer never came back
    assert intent(project, intent_id).state == "failed"
    [row] = ledger(project, intent_id)
    assert (row["action"], row["status"]) == ("refund", "pending")
    assert payments.effects()["effects"] == before + 1
    with project.db.connect() as conn:
        assert [p["intent_id"] for p in pending_external(conn)] == [intent_id]
    wait_until("no request in flight", lambda: payments.effects()["in_flight"] == 0, timeout_s=60)

    # A lease later (0 here) the sweeper launches the recovery run: it resumes at commit, reads the
    # refund back by its idempotency key, records it as reconciled, verifies and hands off.
    with_workflow(project, ShortRefund(), lease_seconds=0.0, recovery_backoff_s=0.0)
    sweeps = [t for t in project.tick() if t.sensor == "recovery__sweeper"]
    assert [r.success for t in sweeps for r in t.runs] == [True]
    assert intent(project, intent_id).state == "completed"
    refund_row, notice_row = ledger(project, intent_id)
    assert refund_row["status"] == WriteStatus.RECONCILED and notice_row["status"] == WriteStatus.COMMITTED
    ev = refund_row["evidence"]
    assert (ev["via"], ev["by"], ev["when"], ev["decision"]) == ("read_back", "idempotency_key", "recovery", "committed")
    [refund] = refunds_for(payments, "ORD-1001")
    assert refund_row["target"] == f"payments.refunds:{refund['id']}" and refund["reference"] == "R-crash"
    fx = payments.effects()
    assert (fx["effects"], fx["duplicates"]) == (before + 1, 0)
    with project.db.connect() as conn:
        assert pending_external(conn) == []
    st = project.status()
    assert (st.duplicate_writes, st.stranded, st.partial_commits) == (0, 0, 0)


# -- smaller rules: a refused earlier request, the pack's sending flag, the asset check ---------------------
def test_a_refused_earlier_request_does_not_make_a_duplicate(project, payments):
    refused = add_request(project, "R-a", "Cheaper elsewhere.", order_id="ORD-1009", amount_cents=500,
                          reason="price_drop")
    retry = add_request(project, "R-b", "The frame is cracked.", order_id="ORD-1009", amount_cents=500)
    assert all(r.success for r in tick_until_idle(project))
    assert intent(project, refused).state == "rejected_input"
    assert intent(project, retry).state == "completed"
    assert [r["reference"] for r in refunds_for(payments, "ORD-1009")] == ["R-b"]


def test_a_draft_is_ready_to_send_only_when_the_pack_allows_it_and_the_asset_check_reads_the_service(
        project, payments, tmp_path):
    pack = tmp_path / "policy.yaml"
    pack.write_text(WF.policy_file.read_text().replace("send_customer_notifications: false",
                                                       "send_customer_notifications: true"))

    class Sending(Refund):
        policy_file = pack

    assert Sending().policy.hand_off.send_customer_notifications and Sending().policy.digest != WF.policy.digest
    with_workflow(project, Sending())
    done = add_request(project, "R-s", "Parcel never arrived.", order_id="ORD-1011", amount_cents=1_000)
    assert all(r.success for r in tick_until_idle(project))
    assert intent(project, done).state == "completed"
    with project.db.connect() as conn:
        assert conn.execute(select(refund_notices.c.status, refund_notices.c.to_address)).all() == [
            ("ready_to_send", "kara.obi@mail.example")]  # the address the payments API holds for the order
    check = project.definitions.resolve_job_def("system_of_record__checks").execute_in_process(
        instance=project.instance, raise_on_error=False)
    assert check.success
    [evaluation] = [e for e in check.get_asset_check_evaluations() if e.check_name == "payments_refunds__post_write"]
    assert evaluation.passed and evaluation.metadata["rows"].value == 1
