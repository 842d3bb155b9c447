"""Durable completion: one live run per intent (the claim), the recovery sweeper, transient database
errors retried, and `status` showing stranded intents and partial commits until they are recovered."""

import dagster as dg
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from agent_pipelines.framework import claims
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.jobs import run_config, run_tags
from agent_pipelines.framework.recovery import Sweeper
from agent_pipelines.framework.tables import approval_requests, escalations, intents
from agent_pipelines.project import Project
from tests.helpers import WF, intake, register, run_intent, state
from tests.support import wait_until
from tests.test_exactly_once import _faulty_job, counts


@pytest.fixture
def fast(seeded: Project) -> Project:
    """Leases that expire at once and no backoff, so a stranded intent is due without waiting."""
    seeded.settings = seeded.settings.model_copy(update={"lease_seconds": 0.0, "recovery_backoff_s": 0.0})
    return seeded


def crash_between_writes(project: Project, faults, intent_id: str) -> None:  # type: ignore[no-untyped-def]
    """The payment tool crashes after the invoice and PO writes landed: 2 of 3 writes, intent failed."""
    faults.write_text("schedule_payment")
    config = {**run_config(WF, intent_id), "resources": {"runtime": {"config": {"db_url": project.settings.db_url, "state_dir": str(project.settings.state_dir)}}}}
    first = dg.execute_job(dg.reconstructable(_faulty_job), instance=project.instance, run_config=config,
                           tags=run_tags(WF, intent_id, model="offline-rules"), raise_on_error=False)
    assert not first.success
    faults.write_text("")


def test_a_second_run_stops_while_another_run_holds_the_claim(seeded):
    intent_id = register(seeded, intake())
    job = seeded.definitions.get_job_def("invoice_matching")
    owner = seeded.instance.create_run_for_job(job_def=job, run_config=run_config(WF, intent_id))  # alive, queued
    assert claims.acquire(seeded.db, intent_id, owner.run_id, lease_s=120) is None
    result = run_intent(seeded, intent_id)
    assert result.success  # a duplicate is not an error; it changes nothing
    logs = [e.user_message for e in seeded.instance.all_logs(result.run_id)]
    assert any(f"claimed by run {owner.run_id}: this run stops here and changes nothing" in m for m in logs)
    assert state(seeded, intent_id) == "received"
    assert counts(seeded)["ledger"] == 0
    with seeded.db.connect() as conn:
        assert conn.execute(select(approval_requests)).first() is None
        assert conn.execute(select(intents.c.owner_run_id)).scalar_one() == owner.run_id


def test_claim_is_compare_and_set_with_a_lease(seeded):
    intent_id = register(seeded, intake())
    assert claims.acquire(seeded.db, intent_id, "run-a", lease_s=120) is None
    assert claims.acquire(seeded.db, intent_id, "run-b", lease_s=120) == "run-a"  # held
    assert claims.acquire(seeded.db, intent_id, "run-a", lease_s=120) is None  # renewed by the owner
    assert claims.acquire(seeded.db, intent_id, "run-b", lease_s=120, dead_owner="run-a") is None  # owner died
    assert claims.acquire(seeded.db, intent_id, "run-c", lease_s=0) == "run-b"
    assert claims.acquire(seeded.db, intent_id, "run-b", lease_s=0) is None  # a lease of 0 expires at once
    assert claims.acquire(seeded.db, intent_id, "run-c", lease_s=120) is None  # expired: taken over
    with pytest.raises(claims.ClaimHeld, match="claimed by run run-c"):
        IntentStore(seeded.db).transition(intent_id, "running", run_id="run-b")


def test_a_duplicate_trigger_run_does_not_retry_a_failed_intent(seeded, faults):
    intent_id = register(seeded, intake())
    crash_between_writes(seeded, faults, intent_id)
    before = counts(seeded)
    result = run_intent(seeded, intent_id)  # launched like a trigger's run: no recovery tag, no parent
    assert result.success
    assert state(seeded, intent_id) == "failed" and counts(seeded) == before


def test_the_sweeper_finishes_a_partial_commit_from_the_stored_plan(fast, faults):
    intent_id = register(fast, intake())
    crash_between_writes(fast, faults, intent_id)
    assert (counts(fast)["invoices"], counts(fast)["payments"], counts(fast)["ledger"]) == (1, 0, 2)
    st = fast.status()
    assert (st.stranded, st.partial_commits) == (1, 1)

    ticks = fast.tick()
    sweep = next(t for t in ticks if t.sensor == "recovery__sweeper")
    assert [r.run_key for r in sweep.runs] == [f"recover:{intent_id}:1"] and sweep.runs[0].success
    assert state(fast, intent_id) == "completed"
    assert counts(fast) == {"invoices": 1, "payments": 1, "ledger": 3, "po_invoiced": 100_000, "dup": 0}
    st = fast.status()
    assert (st.stranded, st.partial_commits, st.duplicate_writes) == (0, 0, 0)
    reasons = [h["reason"] or "" for h in IntentStore(fast.db).history(intent_id)]
    assert any(r.startswith("recovery attempt 1/3: retrying after failure") for r in reasons)
    # the sweeper has nothing left to do, and neither does a second tick
    assert not [r for t in fast.tick() for r in t.runs]


def test_recovery_attempts_are_bounded_then_escalated(fast, faults):
    intent_id = register(fast, intake())
    crash_between_writes(fast, faults, intent_id)
    launched: list[tuple[str, int]] = []
    sweeper = Sweeper(fast.db, fast.instance, {WF.name: WF}, lease_s=0, backoff_s=0)
    for _ in range(WF.policy.recovery.max_attempts):  # recovery runs that never happen: the intent stays failed
        out = sweeper.sweep(lambda wf, i, n, a: launched.append((i, n)))
        assert out.gave_up == []
    assert launched == [(intent_id, n) for n in range(1, WF.policy.recovery.max_attempts + 1)]
    out = sweeper.sweep(lambda wf, i, n, a: launched.append((i, n)))
    assert out.gave_up == [intent_id] and len(launched) == WF.policy.recovery.max_attempts
    intent = IntentStore(fast.db).get(intent_id)
    assert intent.state == "needs_attention" and intent.reason.startswith("recovery gave up after 3 attempt(s)")
    with fast.db.connect() as conn:
        kinds = conn.execute(select(escalations.c.kind).where(escalations.c.intent_id == intent_id)).scalars().all()
    assert "recovery_exhausted" in kinds
    assert fast.status().stranded == 0  # needs_attention is escalated, not stranded
    assert sweeper.sweep(lambda wf, i, n, a: launched.append((i, n))).gave_up == []


def test_transient_database_errors_are_retried(project):
    attempts = []

    def flaky(conn):  # type: ignore[no-untyped-def]
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("SELECT 1", {}, Exception("could not connect to server: Connection refused"))
        return "ok"

    assert project.db.transaction(flaky) == "ok" and len(attempts) == 3

    def broken(conn):  # type: ignore[no-untyped-def]
        attempts.append(1)
        raise OperationalError("SELECT 1", {}, Exception('relation "nope" does not exist'))

    attempts.clear()
    with pytest.raises(OperationalError):
        project.db.transaction(broken)
    assert len(attempts) == 1  # not transient: no retry


def test_a_run_keeps_its_claim_while_its_checks_outlast_the_lease(seeded, monkeypatch):
    """The checks of validate and verify run between the step's two guards; on a busy worker Great
    Expectations can take longer than a lease, and without a heartbeat the sweeper would take the live
    run for a dead one. Each check here waits until the claim has been renewed after it began."""
    from agent_pipelines.framework import quality

    seeded.settings = seeded.settings.model_copy(update={"lease_seconds": 1.5})
    intent_id = register(seeded, intake())
    real, renewed = quality.run_checks, []

    def beat_at():  # type: ignore[no-untyped-def]
        with seeded.db.connect() as conn:
            return conn.execute(select(intents.c.heartbeat_at).where(intents.c.intent_id == intent_id)).scalar_one()

    def slow_checks(checks):  # type: ignore[no-untyped-def]
        began = beat_at()
        renewed.append(wait_until("the claim renewed during the checks", lambda: beat_at() > began, timeout_s=20))
        return real(checks)

    monkeypatch.setattr(quality, "run_checks", slow_checks)
    result = run_intent(seeded, intent_id)
    assert result.success and state(seeded, intent_id) == "completed"
    assert len(renewed) == 2  # validate's pre-write suite and verify's post-write suite
