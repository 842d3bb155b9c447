"""Operator controls: the kill switch (global, workflow, tool) and the rollout modes, end to end
through the sensors, the jobs and the gateway."""

import dagster as dg
import pytest
from sqlalchemy import func, select

import agent_pipelines.schema  # noqa: F401 - the shadow report needs the system-of-record tables
from agent_pipelines.framework import controls, gateway, shadow
from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.jobs import TAG, run_config, run_tags
from agent_pipelines.framework.policy import Mode
from agent_pipelines.framework.tables import parked_intents, shadow_writes, tool_calls, writes
from resources.system_of_record import purchase_orders, scheduled_payments, staged_invoices
from tests.conftest import invoice_json
from tests.helpers import WF, decide_as, intake, register, state


def n(project, table, *where) -> int:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def run_in_mode(project, intent_id: str, mode: Mode, job: str = "invoice_matching"):  # type: ignore[no-untyped-def]
    return project.definitions.get_job_def(job).execute_in_process(
        run_config=run_config(WF, intent_id), instance=project.instance, raise_on_error=False,
        tags=run_tags(WF, intent_id, model="offline-rules", mode=mode))


def ticks_of(project, sensor: str):  # type: ignore[no-untyped-def]
    return [t for t in project.tick() if t.sensor == sensor]


# -- kill switch -------------------------------------------------------------------------------------
def test_kill_switch_turned_on_mid_commit_is_refused_by_the_writes_transaction_then_resumes_once(seeded, monkeypatch):
    """The switch goes on after the three writes were admitted, just before their transaction: the
    fence in that transaction refuses them all (they go together: ToolGateway.write_all), the intent
    parks; off -> the release sensor resumes it and the ledger completes it with no duplicate."""
    intent_id = register(seeded, intake())
    real_apply_all = gateway.apply_all

    def switch_then_apply(*args, **kwargs):  # type: ignore[no-untyped-def]
        controls.set_kill_switch(seeded.db, on=True, actor="oncall", reason="bad payment batch")
        return real_apply_all(*args, **kwargs)

    monkeypatch.setattr(gateway, "apply_all", switch_then_apply)
    result = run_in_mode(seeded, intent_id, Mode.FULL)
    monkeypatch.undo()
    assert result.success  # parking is an operator's stop, not a failure
    assert state(seeded, intent_id) == "parked"
    assert n(seeded, writes) == 0 and n(seeded, scheduled_payments) == 0 and n(seeded, staged_invoices) == 0
    with seeded.db.connect() as conn:
        [park] = conn.execute(select(parked_intents)).mappings().all()
        blocked = conn.execute(select(tool_calls.c.tool, tool_calls.c.error)
                               .where(tool_calls.c.status == "blocked")).all()
    assert [b.tool for b in blocked] == ["stage_invoice"] and "bad payment batch" in blocked[0].error
    assert (park["scope"], park["step"], park["released_at"]) == ("global", "commit", None)
    assert "invoice_matching__verify" not in {e.step_key for e in result.all_events
                                              if e.event_type == dg.DagsterEventType.STEP_SUCCESS}

    # while on: nothing is released and the sensors say why they do not launch
    [release] = ticks_of(seeded, "killswitch__on_release")
    assert release.runs == []
    controls.set_kill_switch(seeded.db, on=False, actor="oncall")
    [release] = ticks_of(seeded, "killswitch__on_release")
    assert [r.success for r in release.runs] == [True]
    assert state(seeded, intent_id) == "completed"
    assert n(seeded, writes) == 3 and n(seeded, scheduled_payments) == 1 and n(seeded, staged_invoices) == 1
    assert n(seeded, parked_intents, parked_intents.c.released_at.is_(None)) == 0
    assert ticks_of(seeded, "killswitch__on_release")[0].runs == []  # resumed once


def test_workflow_kill_switch_skips_launches_keeps_the_cursor_and_other_workflows_run(seeded, drop):
    controls.set_kill_switch(seeded.db, on=True, actor="oncall", workflow="invoice_matching",
                             reason="vendor bank data incident")
    drop("inv-1.json", invoice_json())
    [tick] = ticks_of(seeded, "invoice_matching__on_new_invoice")
    assert tick.runs == [] and "vendor bank data incident" in (tick.skip_reason or "")
    assert seeded.status().intents == {}  # the file was not consumed
    controls.set_kill_switch(seeded.db, on=False, actor="oncall", workflow="invoice_matching")
    [tick] = ticks_of(seeded, "invoice_matching__on_new_invoice")
    assert [r.success for r in tick.runs] == [True]
    assert seeded.status().intents == {"completed": 1}


def test_tool_kill_switch_parks_the_intent_before_any_of_its_writes(seeded):
    controls.set_kill_switch(seeded.db, on=True, actor="oncall", tool="schedule_payment", reason="payments frozen")
    intent_id = register(seeded, intake())
    assert run_in_mode(seeded, intent_id, Mode.FULL).success
    assert state(seeded, intent_id) == "parked"
    with seeded.db.connect() as conn:
        actions = [r.action for r in conn.execute(select(writes.c.action).order_by(writes.c.id))]
    assert actions == []  # the intent's writes land together, so none before the held one
    assert controls.releasable(seeded.db) == []
    controls.set_kill_switch(seeded.db, on=False, actor="oncall", tool="schedule_payment")
    [release] = ticks_of(seeded, "killswitch__on_release")
    assert [r.success for r in release.runs] == [True]
    assert state(seeded, intent_id) == "completed" and n(seeded, writes) == 3


def test_kill_switch_holds_an_approved_continuation_until_released(seeded):
    from agent_pipelines.framework import approvals

    intent_id = register(seeded, intake(total_cents=120_000))
    assert run_in_mode(seeded, intent_id, Mode.FULL).success
    [req] = approvals.pending(seeded.db)
    decide_as(seeded, WF.policy, req["approval_id"], "alice")
    controls.set_kill_switch(seeded.db, on=True, actor="oncall", reason="audit freeze")
    [tick] = ticks_of(seeded, "approvals__on_decision")
    assert tick.runs == [] and "audit freeze" in (tick.skip_reason or "")
    # a continuation already in flight (launched before the switch) parks at its first step
    job = seeded.definitions.get_job_def("invoice_matching__after_approval")
    rc = {"ops": {"invoice_matching__load_approved": {"config": {"approval_id": req["approval_id"]}}}}
    assert job.execute_in_process(run_config=rc, instance=seeded.instance).success
    assert state(seeded, intent_id) == "parked" and n(seeded, writes) == 0
    controls.set_kill_switch(seeded.db, on=False, actor="oncall")
    runs = [r for t in seeded.tick() for r in t.runs]
    assert [r.success for r in runs] == [True]  # one run: the release (the decision run key is the same intent)
    assert state(seeded, intent_id) == "completed" and n(seeded, writes) == 3
    with seeded.db.connect() as conn:
        assert {r.approval_id for r in conn.execute(select(writes.c.approval_id))} == {req["approval_id"]}


def test_turning_a_kill_switch_on_needs_a_reason(project):
    with pytest.raises(ValueError, match="needs a reason"):
        controls.set_kill_switch(project.db, on=True, actor="oncall", reason=" ")


# -- rollout modes -----------------------------------------------------------------------------------
def test_read_only_records_would_write_and_changes_nothing(seeded):
    intent_id = register(seeded, intake())
    result = run_in_mode(seeded, intent_id, Mode.READ_ONLY)
    assert result.success and state(seeded, intent_id) == "completed"
    assert (n(seeded, writes), n(seeded, staged_invoices), n(seeded, scheduled_payments)) == (0, 0, 0)
    with seeded.db.connect() as conn:
        po = conn.execute(select(purchase_orders).where(purchase_orders.c.po_number == "PO-1")).mappings().one()
        rows = conn.execute(select(shadow_writes).order_by(shadow_writes.c.id)).mappings().all()
        statuses = {r.status for r in conn.execute(select(tool_calls.c.status).where(tool_calls.c.kind == "write"))}
    assert (po["invoiced_cents"], po["version"]) == (0, 1)
    assert [(r["mode"], r["action"]) for r in rows] == [("read_only", "stage_invoice"),
                                                      ("read_only", "record_po_invoiced"),
                                                      ("read_only", "schedule_payment")]
    assert rows[1]["after"]["invoiced_cents"] == 100_000  # exactly what the write would have done
    assert statuses == {"read_only"}
    assert "nothing written" in seeded.intents()[0]["reason"]
    assert not [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]


def test_shadow_writes_to_the_shadow_table_and_reports_against_what_humans_did(seeded):
    first = register(seeded, intake())
    second = register(seeded, intake(invoice_number="INV-200", total_cents=20_000,
                                     lines=intake().lines[:1], memo="second"))
    for intent_id in (first, second):
        assert run_in_mode(seeded, intent_id, Mode.SHADOW).success
    assert n(seeded, writes) == 0 and n(seeded, shadow_writes, shadow_writes.c.mode == "shadow") == 6
    before = shadow.summary(shadow.report(seeded.db, "invoice_matching"))
    assert before == {"shadow_writes": 6, "match": 0, "differs": 2, "missing": 4, "unknown_table": 0}
    # A clerk books the first invoice by hand exactly as the agent proposed (the same tool functions,
    # outside the agent), and the second one with another amount.
    tools = WF.tools()
    with seeded.db.connect() as conn:
        rows = conn.execute(select(shadow_writes).order_by(shadow_writes.c.id)).mappings().all()
    with seeded.db.begin() as conn:
        for row in rows:
            params = dict(row["params"])
            if row["intent_id"] == second:
                if row["tool"] != "stage_invoice":
                    continue
                params["amount_cents"] = 19_000
            tool = tools.get(row["tool"])
            tool.fn(conn, tool.params.model_validate(params))
    report = {(r.intent_id, r.action): r for r in shadow.report(seeded.db, "invoice_matching")}
    assert {a: report[(first, a)].status for a in ("stage_invoice", "record_po_invoiced", "schedule_payment")} == \
        {"stage_invoice": "match", "record_po_invoiced": "match", "schedule_payment": "match"}
    assert report[(first, "schedule_payment")].not_compared == ("payment_account",)  # redacted, never "differs"
    differs = report[(second, "stage_invoice")]
    assert differs.status == "differs" and differs.differences["amount_cents"] == {"agent": 20_000, "human": 19_000}
    assert report[(second, "schedule_payment")].status == "missing"
    assert n(seeded, writes) == 0  # the report only reads


def test_limited_mode_holds_high_impact_for_approval_and_lets_low_impact_through(seeded):
    intent_id = register(seeded, intake())  # within policy: in full mode it would commit unreviewed
    assert run_in_mode(seeded, intent_id, Mode.LIMITED).success
    assert state(seeded, intent_id) == "waiting_for_approval" and n(seeded, writes) == 0
    with seeded.db.connect() as conn:
        from agent_pipelines.framework.tables import policy_decisions

        rule = conn.execute(select(policy_decisions.c.rule).where(policy_decisions.c.subject == "proposal")).scalar()
    assert rule == "limited_mode_holds_high_impact"
    # a limited-mode gateway refuses the high-impact write itself without an approval
    from agent_pipelines.framework.tools import ToolHeld

    gw = ToolGateway.open(WF.tools(), WF.policy, seeded.db, intent_id=intent_id, run_id="r-limited",
                          mode=Mode.LIMITED)
    with pytest.raises(ToolHeld):
        gw.write("schedule_payment", {"invoice_id": "x", "intent_id": intent_id, "vendor_id": "V-1",
                                      "currency": "USD", "amount_cents": 100, "pay_on": "2026-12-01"},
                 action="schedule_payment")
    assert n(seeded, writes) == 0


def test_the_mode_is_pinned_when_the_run_is_launched(seeded, drop):
    controls.set_mode(seeded.db, "invoice_matching", Mode.READ_ONLY, actor="lead")
    drop("inv-1.json", invoice_json())
    defs = seeded.definitions
    sensor = defs.get_repository_def().get_sensor_def("invoice_matching__on_new_invoice")
    with dg.build_sensor_context(instance=seeded.instance, resources=defs.resources) as ctx:
        data = sensor(ctx)
    [rr] = data.run_requests
    assert rr.tags[f"{TAG}/mode"] == "read_only" and rr.tags["dagster/max_runtime"] == "600"
    controls.set_mode(seeded.db, "invoice_matching", Mode.FULL, actor="lead")  # changed after launch
    result = defs.get_job_def("invoice_matching").execute_in_process(
        run_config=rr.run_config, tags=rr.tags, instance=seeded.instance)
    assert result.success and n(seeded, writes) == 0 and n(seeded, shadow_writes) == 3
