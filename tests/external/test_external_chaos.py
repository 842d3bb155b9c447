"""Chaos at the external write path: a crash between the HTTP call and its record, CRASHES times
against the payments API (honours idempotency keys) and CRASHES times against the CRM (does not),
each followed by recovery; duplicates are counted from the services' own state.

The first KILLS crashes per API are real: a writer process makes the call, the service applies the
effect and holds its answer, the test sees the effect in the service's state and SIGKILLs the writer
(its ledger row is left pending). The others lose the answer after the effect (the service answers
nothing; the writer's read timeout fires, its single attempt fails). Recovery is what the intent's
recovery run does at commit: the same write again, which reads the service back before any call."""

import os
import signal
import subprocess
from collections import Counter

from agent_pipelines.framework.external import ExternalOutcomeUnknown
from agent_pipelines.framework.ledger import WriteStatus, duplicate_ledger_writes
from agent_pipelines.framework.recovery import pending_external
from agent_pipelines.services.clients import crm_task_tool, crm_update_tool, refund_tool
from agent_pipelines.services.harness import Served
from tests.external.conftest import gateway, ledger, settled, worker_command, worker_env
from tests.support import SUMMARY, wait_until

CRASHES = int(os.environ.get("AGENT_PIPELINES_EXTERNAL_CRASHES", "20"))
KILLS = min(CRASHES, int(os.environ.get("AGENT_PIPELINES_EXTERNAL_KILLS", "6")))
LOST_ANSWER_TIMEOUT_S = 1.0  # the writer's read timeout when the service keeps the answer


def case(api: str, i: int) -> tuple[str, dict]:
    """One write per crash, on its own record: a refund, or (CRM) alternately a patch and a task."""
    if api == "payments":
        return "create_refund", {"order_id": f"O-{i}", "amount_cents": 1000 + i, "reason": "damaged",
                                 "reference": f"RR-{i}"}
    if i % 2 == 0:
        return "update_opportunity", {"opportunity_id": f"OP-{i}", "base_version": 1, "stage": "proposal",
                                      "next_step": f"send quote {i}"}
    return "create_task", {"opportunity_id": f"OP-{i}", "subject": f"Follow up {i}", "ref": f"hygiene:OP-{i}"}


TOOLS = {"create_refund": refund_tool, "update_opportunity": crm_update_tool, "create_task": crm_task_tool}


def kill_after_effect(served: Served, applied: int, command: list[str]) -> None:
    """Start the writer; once the service's own state holds the effect (its answer is held back, so the
    writer is between the call and its record), SIGKILL it."""
    proc = subprocess.Popen(command, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until("the effect in the service", lambda: served.effects()["effects"] > applied or
                   proc.poll() is not None, timeout_s=120)
        assert proc.poll() is None, proc.communicate()  # it must not have finished (or failed) on its own
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_crash_between_call_and_record_then_recovery_gives_one_effect(project, payments, crm):
    figures: Counter[str] = Counter()
    for api, served in (("payments", payments), ("crm", crm)):
        for i in range(CRASHES):
            tool, params = case(api, i)
            intent = f"{api}:{i}"
            applied = served.effects()["effects"]
            served.faults(after_effect="lose", after_effect_count=1)
            if i < KILLS:
                kill_after_effect(served, applied, worker_command(project.settings.db_url, tool, intent, params))
                figures[f"{api}_killed"] += 1
            else:
                try:
                    gateway(project.db, [TOOLS[tool](attempts=1, timeout_s=LOST_ANSWER_TIMEOUT_S)], intent).write(
                        tool, params, action="apply")
                    raise AssertionError(f"{intent}: the answer was lost, the write cannot have been recorded")
                except ExternalOutcomeUnknown:
                    figures[f"{api}_lost"] += 1
            assert ledger(project.db, intent)["status"] == "pending", intent
            settled(served)

            receipt = gateway(project.db, [TOOLS[tool]()], intent).write(tool, params, action="apply")
            row = ledger(project.db, intent)
            assert row["status"] == receipt.status and row["evidence"]["via"] in ("read_back", "call")
            if receipt.status == WriteStatus.RECONCILED:  # the read-back found the effect: no call made
                assert row["evidence"]["when"] == "recovery" and row["evidence"]["found"]
            else:  # the writer gave up before the service applied it: read back, not found, called once
                assert receipt.status == WriteStatus.COMMITTED
                assert row["evidence"]["read_back"]["decision"] == "not_committed"
            figures[f"{api}_{receipt.status}"] += 1
            assert served.effects()["effects"] == applied + 1, (intent, served.effects())

    pay, crm_fx = payments.effects(), crm.effects()
    with project.db.connect() as conn:
        pending, ledger_dups = pending_external(conn), duplicate_ledger_writes(conn)
    line = (f"external crashes [{project.db.dialect}]: payments (honours keys) {CRASHES} crashes "
            f"({figures['payments_killed']} SIGKILLed writers, {figures['payments_lost']} lost answers), recovered "
            f"{figures['payments_reconciled']} reconciled + {figures['payments_committed']} re-called, effects "
            f"{pay['effects']}, duplicates {pay['duplicates']}; crm (ignores keys) {CRASHES} crashes "
            f"({figures['crm_killed']} SIGKILLed, {figures['crm_lost']} lost), recovered {figures['crm_reconciled']} "
            f"reconciled + {figures['crm_committed']} re-called, effects {crm_fx['effects']}, duplicates "
            f"{crm_fx['duplicates']}; pending left {len(pending)}, ledger duplicates {ledger_dups}")
    SUMMARY.append(line)
    assert figures["payments_killed"] + figures["payments_lost"] == CRASHES
    assert figures["crm_killed"] + figures["crm_lost"] == CRASHES
    assert (pay["effects"], pay["duplicates"]) == (CRASHES, 0)
    assert (crm_fx["effects"], crm_fx["duplicates"]) == (CRASHES, 0)
    assert pending == [] and ledger_dups == 0
    # The SIGKILLed writers died after the effect was applied: their rows can only have been reconciled.
    assert figures["payments_reconciled"] >= KILLS and figures["crm_reconciled"] >= KILLS
