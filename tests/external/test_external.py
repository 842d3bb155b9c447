"""External writes over HTTP (framework/external.py) against the local payments API (honours
idempotency keys) and CRM API (ETag/If-Match, ignores them): pending → committed with the answer as
evidence; a lost answer left pending and decided by a read-back (reconciled); 429/5xx storms with one
effect; Retry-After honoured; conflicts refused; kill switch and read_only make no call."""

import pytest

from agent_pipelines.framework import controls
from agent_pipelines.framework.external import DryRunRefused, ExternalOutcomeUnknown
from agent_pipelines.framework.write_stops import KillSwitchEngaged
from agent_pipelines.framework.tools import ToolBlocked, ToolHeld
from agent_pipelines.framework.ledger import (
    PreconditionFailed,
    WriteStatus,
    duplicate_ledger_writes,
    landed_writes,
)
from agent_pipelines.framework.policy import Mode
from agent_pipelines.framework.recovery import pending_external
from agent_pipelines.framework.tables import shadow_writes, tool_calls
from agent_pipelines.services.clients import crm_task_tool, crm_update_tool, refund_tool
from tests.external.conftest import WORKFLOW, gateway, ledger, settled, with_sleep
from tests.support import SUMMARY

REFUND = {"order_id": "O-1", "amount_cents": 2500, "reason": "damaged", "reference": "RR-1"}


def test_refund_commits_once_with_the_answer_as_evidence(project, payments):
    gw = gateway(project.db, [refund_tool()], "r:1")
    receipt = gw.write("create_refund", REFUND, action="refund")
    assert receipt.status == WriteStatus.COMMITTED and receipt.table == "payments.refunds"
    row = ledger(project.db, "r:1")
    assert row["status"] == "committed" and row["target"] == f"payments.refunds:{receipt.key}"
    assert row["evidence"]["via"] == "call" and row["evidence"]["http_status"] == 201
    assert row["evidence"]["answer"]["amount_cents"] == 2500 and row["evidence"]["attempts"] == 1
    again = gateway(project.db, [refund_tool()], "r:1").write("create_refund", REFUND, action="refund")
    assert "replayed" not in row["evidence"]  # nothing was sent twice
    assert again.status == WriteStatus.ALREADY_COMMITTED and again.key == receipt.key
    assert payments.effects()["effects"] == 1 and payments.effects()["writes_seen"] == 1
    with project.db.connect() as conn:  # the gateway's trace has the call like any other write
        calls = conn.execute(tool_calls.select().where(tool_calls.c.tool == "create_refund")).mappings().all()
    assert [c["status"] for c in calls] == ["ok", "ok"]


def test_a_lost_answer_stays_pending_and_recovery_reconciles_it_by_idempotency_key(project, payments):
    payments.faults(after_effect="lose", after_effect_count=1)
    with pytest.raises(ExternalOutcomeUnknown):
        gateway(project.db, [refund_tool(attempts=1, timeout_s=1.0)], "r:2").write("create_refund", REFUND,
                                                                                     action="refund")
    assert ledger(project.db, "r:2")["status"] == "pending"
    settled(payments)
    with project.db.connect() as conn:
        assert [p["intent_id"] for p in pending_external(conn)] == ["r:2"]
    assert landed_writes(project.db, "r:2") == 1  # a recovery resumes at commit, never re-decides
    effects = payments.effects()["effects"]
    receipt = gateway(project.db, [refund_tool()], "r:2").write("create_refund", REFUND, action="refund")
    row = ledger(project.db, "r:2")
    if effects == 1:  # the service applied it before the answer was lost (the usual case)
        assert receipt.status == WriteStatus.RECONCILED and row["status"] == "reconciled"
        assert row["evidence"]["via"] == "read_back" and row["evidence"]["by"] == "idempotency_key"
        assert row["evidence"]["found"]["id"] == receipt.key
    else:  # the client gave up before the service applied it: read back, not found, called again
        assert receipt.status == WriteStatus.COMMITTED and row["evidence"]["read_back"]["decision"] == "not_committed"
    after = payments.effects()
    assert (after["effects"], after["duplicates"], after["refunded_cents"]) == (1, 0, 2500)
    with project.db.connect() as conn:
        assert pending_external(conn) == [] and duplicate_ledger_writes(conn) == 0


def test_a_pending_write_that_never_landed_is_called_again_after_the_read_back(project, payments):
    payments.faults(script=[503])
    with pytest.raises(ExternalOutcomeUnknown):
        gateway(project.db, [refund_tool(attempts=1)], "r:3").write("create_refund", REFUND, action="refund")
    assert payments.effects()["effects"] == 0 and ledger(project.db, "r:3")["status"] == "pending"
    receipt = gateway(project.db, [refund_tool()], "r:3").write("create_refund", REFUND, action="refund")
    row = ledger(project.db, "r:3")
    assert receipt.status == WriteStatus.COMMITTED and row["evidence"]["http_status"] == 201
    assert row["evidence"]["read_back"] == {"by": "idempotency_key", "when": "recovery", "decision": "not_committed",
                                            "left_pending_by_run": "run-r:3"}
    assert payments.effects()["effects"] == 1


def test_non_honouring_api_lost_answer_is_read_back_before_the_retry(project, crm):
    crm.faults(after_effect="lose", after_effect_count=1)
    task = {"opportunity_id": "OP-1", "subject": "Send the revised quote", "ref": "hygiene:OP-1:task"}
    # Between attempts the tool settles (settle_s: a request still in flight lands before the read-back);
    # here it waits until the CRM handles no request, which the CRM counts.
    tool = with_sleep(crm_task_tool(timeout_s=1.0), lambda s: settled(crm))
    receipt = gateway(project.db, [tool], "c:1").write("create_task", task, action="task")
    effects = crm.effects()
    assert effects["effects"] == 1 and effects["duplicates"] == 0
    row = ledger(project.db, "c:1")
    if effects["writes_seen"] == 1:  # the answer was lost after the effect: the read-back found it
        assert receipt.status == WriteStatus.RECONCILED and row["evidence"]["by"] == "business_key"
        assert row["evidence"]["when"] == "retry" and row["evidence"]["found"]["ref"] == task["ref"]
    else:
        assert receipt.status == WriteStatus.COMMITTED


def test_storm_of_429_and_5xx_gives_one_effect_and_honours_retry_after(project, payments, crm):
    sleeps: list[float] = []
    payments.faults(script=[429, 503, 500, 502, 429], retry_after_s=3)
    gw = gateway(project.db, [with_sleep(refund_tool(attempts=6), sleeps.append)], "s:1")
    receipt = gw.write("create_refund", REFUND, action="refund")
    assert receipt.status == WriteStatus.COMMITTED and ledger(project.db, "s:1")["evidence"]["attempts"] == 6
    assert sleeps == [3.0] * 5  # Retry-After, not our own backoff
    assert payments.effects()["effects"] == 1 and payments.effects()["writes_seen"] == 6

    crm_sleeps: list[float] = []
    crm.faults(script=[503, 429, 500, 503])  # no Retry-After: capped exponential backoff with jitter ...
    update = {"opportunity_id": "OP-2", "base_version": 1, "stage": "proposal", "next_step": "send quote"}
    gw = gateway(project.db, [with_sleep(crm_update_tool(attempts=5, settle_s=7.0), crm_sleeps.append)], "s:2")
    receipt = gw.write("update_opportunity", update, action="update")
    assert receipt.status == WriteStatus.COMMITTED and receipt.after == {"version": 2, "stage": "proposal",
                                                                          "next_step": "send quote"}
    # ... but after a 5xx (it may have reached the CRM, which ignores keys) it settles before the read-back.
    assert crm_sleeps[0] == crm_sleeps[2] == crm_sleeps[3] == 7.0 and 0 < crm_sleeps[1] <= 5.0
    assert ledger(project.db, "s:2")["evidence"]["maybe_applied"] is True
    crm_effects = crm.effects()
    assert crm_effects["updates"] == 1 and crm_effects["duplicates"] == 0
    SUMMARY.append(f"external storms [{project.db.dialect}]: payments 5 injected 429/5xx -> 1 refund; "
                   f"crm 4 injected 429/5xx -> {crm_effects['updates']} update, duplicates "
                   f"{payments.effects()['duplicates'] + crm_effects['duplicates']}")


def test_a_stale_version_is_refused_and_leaves_no_row(project, crm):
    gw = gateway(project.db, [crm_update_tool()], "k:1")
    gw.write("update_opportunity", {"opportunity_id": "OP-3", "base_version": 1, "stage": "won"}, action="a")
    with pytest.raises(PreconditionFailed):
        gateway(project.db, [crm_update_tool()], "k:2").write(
            "update_opportunity", {"opportunity_id": "OP-3", "base_version": 1, "stage": "lost"}, action="a")
    assert ledger(project.db, "k:2") is None and crm.effects()["updates"] == 1


def test_kill_switch_means_no_call(project, payments):
    controls.set_kill_switch(project.db, on=True, actor="ops", workflow=WORKFLOW, reason="payments incident")
    with pytest.raises(KillSwitchEngaged):
        gateway(project.db, [refund_tool()], "x:1").write("create_refund", REFUND, action="refund")
    assert payments.effects()["writes_seen"] == 0 and ledger(project.db, "x:1") is None


@pytest.mark.parametrize("mode", [Mode.READ_ONLY, Mode.SHADOW])
def test_read_only_and_shadow_run_the_dry_run_or_refuse(project, payments, crm, mode):
    receipt = gateway(project.db, [refund_tool()], "m:1", mode).write("create_refund", REFUND, action="refund")
    assert receipt.status == (WriteStatus.WOULD_WRITE if mode == Mode.READ_ONLY else WriteStatus.SHADOW)
    assert receipt.after["status"] == "would_refund"
    with project.db.connect() as conn:
        assert conn.execute(shadow_writes.select()).mappings().one()["tool"] == "create_refund"
    with pytest.raises(DryRunRefused):  # no dry-run declared: refused
        gateway(project.db, [crm_update_tool(dry_run=False)], "m:2", mode).write(
            "update_opportunity", {"opportunity_id": "OP-4", "base_version": 1, "stage": "won"}, action="a")
    assert payments.effects()["writes_seen"] == 0 and crm.effects()["writes_seen"] == 0
    assert ledger(project.db, "m:1") is None and ledger(project.db, "m:2") is None


def test_approvals_and_the_allowlist_hold_before_any_call(project, payments):
    held = gateway(project.db, [refund_tool()], "h:1", approval={"required_for_tools": ["create_refund"]})
    with pytest.raises(ToolHeld):
        held.write("create_refund", REFUND, action="refund")
    with pytest.raises(ToolBlocked):  # not in the pack's allowed_tools: denied by default
        gateway(project.db, [], "h:2").write("create_refund", REFUND, action="refund")
    assert payments.effects()["writes_seen"] == 0 and ledger(project.db, "h:1") is None


def test_evidence_is_redacted_like_every_stored_value(project, payments):
    refund = {**REFUND, "reference": "customer jane.doe@example.com asked"}
    gateway(project.db, [refund_tool()], "p:1").write("create_refund", refund, action="refund")
    row = ledger(project.db, "p:1")
    assert "jane.doe@example.com" not in str(row["evidence"]) and row["evidence"]["http_status"] == 201
    with project.db.connect() as conn:
        traced = conn.execute(tool_calls.select().where(tool_calls.c.tool == "create_refund")).mappings().one()
    assert "jane.doe@example.com" not in str(traced["params"]) + str(traced["result"])
