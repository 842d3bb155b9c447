"""Moves a batch step commits with its chunk (StepRun.move(with_chunk=True), issue 11): a new intent's
start, VERIFYING and COMPLETED commit with the chunk's rows when the step ends, not one transaction each.
They land before the step hands its intents on, and one whose intent someone else moved meanwhile is
dropped (the intent stays where they put it) without failing the others."""

from sqlalchemy import select

from agent_pipelines import bench
from agent_pipelines.framework.intents import transition
from agent_pipelines.framework.states import IntentState as S
from agent_pipelines.framework.tables import intent_transitions
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching
from tests.helpers import WF
from tests.test_batch import _batch, _duplicates, _ledger, _states, faulty_batch_then_from_failure


class QuarantinedInVerify(InvoiceMatching):
    """An operator quarantines one intent while the batch's verify step reads it back: after the step
    left its move to VERIFYING for the chunk's flush."""

    target = "INV-B000001"

    def verify(self, step, intake, context, proposal, receipts):  # type: ignore[no-untyped-def]
        if intake.invoice_number == self.target:
            with step.tools.db.begin() as conn:  # outside the run, as the CLI would
                transition(conn, step.intent.intent_id, S.QUARANTINED, reason="operator: hold this one")
        return super().verify(step, intake, context, proposal, receipts)


def _moves_to(project, ids, state: str) -> set[str]:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return set(conn.execute(select(intent_transitions.c.intent_id).where(
            intent_transitions.c.intent_id.in_(ids), intent_transitions.c.to_state == state)).scalars())


def test_a_move_left_for_the_chunk_does_not_undo_an_operators_move(project):
    with project.db.begin() as conn:
        bench.seed(conn, 4)
    ids = bench.register(project.db, WF, bench.intakes(4))
    result = _batch(project, ids, chunk_size=4, wf=QuarantinedInVerify())
    assert result.success
    assert _states(project, ids) == ["completed", "quarantined", "completed", "completed"]
    # the quarantined intent's VERIFYING move was dropped at the flush, the others' landed with the chunk
    assert _moves_to(project, ids, "verifying") == {ids[0], ids[2], ids[3]}
    assert _moves_to(project, ids, "running") == set(ids)
    assert _ledger(project) == 12 and _duplicates(project) == 0


def test_the_chunks_moves_land_before_the_step_hands_its_intents_on(project, faults):
    """The verify op fails after its chunk was processed (storing its output): the moves it left for the
    chunk are already committed, and a re-execution from failure finishes from there."""
    with project.db.begin() as conn:
        bench.seed(conn, 6)
    ids = bench.register(project.db, WF, bench.intakes(6))
    faults.write_text("store:verify")
    first, again = faulty_batch_then_from_failure(project, ids, 3, faults)
    assert not first.success
    assert _states(project, ids) == ["verifying"] * 6

    second = again()
    assert second.success
    assert _states(project, ids) == ["completed"] * 6
    assert _ledger(project) == 18 and _duplicates(project) == 0


def test_a_switch_or_a_quarantine_mid_batch_is_refused_in_the_writes_own_transaction(project, monkeypatch):
    """A batch's first check of a write uses the switches as its chunk read them: a switch turned on (or
    an intent quarantined) after that is refused by the writes' own transaction, whose claim statement
    checks both (claims.take's `switches`), and the refusal says which it was, not a claim held. An
    intent's writes go together (ToolGateway.write_all), so a refused intent has none of them."""
    from agent_pipelines.framework import controls, gateway
    from agent_pipelines.framework.tables import tool_calls, writes

    with project.db.begin() as conn:
        bench.seed(conn, 4)
    ids = bench.register(project.db, WF, bench.intakes(4))
    real_apply_all = gateway.apply_all

    def stop_then_apply(*args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs["intent_id"] == ids[1]:
            controls.set_kill_switch(project.db, on=True, actor="oncall", tool="schedule_payment",
                                     reason="payments frozen")
        if kwargs["intent_id"] == ids[2]:
            with project.db.begin() as conn:  # an operator, outside the run
                transition(conn, ids[2], S.QUARANTINED, reason="operator: hold this one")
        return real_apply_all(*args, **kwargs)

    monkeypatch.setattr(gateway, "apply_all", stop_then_apply)
    result = _batch(project, ids, chunk_size=4)
    monkeypatch.undo()
    assert result.success
    # The quarantined intent's refused writes fail its commit step (agent_steps.commit: blocked by
    # policy), which moves it on to needs_attention, as a one-intent run does.
    assert _states(project, ids) == ["completed", "parked", "needs_attention", "parked"]
    with project.db.connect() as conn:
        landed = conn.execute(select(writes.c.intent_id, writes.c.action)).all()
        blocked = conn.execute(select(tool_calls.c.intent_id, tool_calls.c.tool, tool_calls.c.error)
                               .where(tool_calls.c.status == "blocked").order_by(tool_calls.c.id)).all()
    per_intent = {i: sorted(a for j, a in landed if j == i) for i in ids}
    assert per_intent[ids[0]] == ["record_po_invoiced", "schedule_payment", "stage_invoice"]
    # refused in their transaction: none of the three writes landed, not even those the switch spares
    assert per_intent[ids[1]] == per_intent[ids[2]] == per_intent[ids[3]] == []
    assert [(b.intent_id, b.tool) for b in blocked] == [(ids[1], "schedule_payment"),
                                                         (ids[2], "stage_invoice"),
                                                         (ids[3], "schedule_payment")]
    assert "payments frozen" in blocked[0].error and "payments frozen" in blocked[2].error
    assert f"intent {ids[2]} is quarantined" in blocked[1].error
    assert not any("claimed by run" in b.error for b in blocked)
    assert _duplicates(project) == 0


def test_many_moves_go_in_one_statement_and_one_moved_meanwhile_is_left_to_decide_alone(project):
    """transition_many (a batch's flush, the commit step's move to committing): the moves it can make land
    with their history rows and each intent's own reason; one whose intent an operator moved, or another
    run claimed, meanwhile, or that is not allowed, is not made and comes back to the caller."""
    from agent_pipelines.framework.agent_steps import TRIGGER_START
    from agent_pipelines.framework.claims import acquire_many
    from agent_pipelines.framework.intents import IntentStore, Move, transition_many
    from agent_pipelines.framework.tables import intents

    with project.db.begin() as conn:
        bench.seed(conn, 6)
    ids = bench.register(project.db, WF, bench.intakes(6))
    store = IntentStore(project.db)
    acquire_many(project.db, ids, "run-a", 300, TRIGGER_START)
    for i in ids:
        store.transition(i, S.RUNNING, run_id="run-a")
    seen = {i: store.get(i) for i in ids}  # as the run last saw them
    store.transition(ids[1], S.QUARANTINED, reason="operator: hold this one")  # outside the run
    with project.db.begin() as conn:  # another run took ids[2] over (a live claim)
        conn.execute(intents.update().where(intents.c.intent_id == ids[2]).values(owner_run_id="run-b"))

    moves = [Move(seen[i], S.COMMITTING, None, "run-a") for i in ids[:4]]
    moves += [Move(seen[ids[4]], S.FAILED, "first reason", "run-a"), Move(seen[ids[5]], S.FAILED, "second", "run-a"),
              Move(seen[ids[3]].model_copy(update={"state": S.RECEIVED}), S.COMPLETED, None, "run-a")]  # not allowed
    moved, left = project.db.transaction(lambda conn: transition_many(conn, moves))

    assert set(moved) == {ids[0], ids[3], ids[4], ids[5]}
    assert [(m.known.intent_id, m.target) for m in left] == [(ids[3], S.COMPLETED), (ids[1], S.COMMITTING),
                                                            (ids[2], S.COMMITTING)]
    now = {i: store.get(i) for i in ids}
    assert [now[i].state for i in ids] == ["committing", "quarantined", "running", "committing", "failed", "failed"]
    assert (now[ids[4]].reason, now[ids[5]].reason) == ("first reason", "second")
    assert moved[ids[4]] == now[ids[4]]  # as a read gives it back
    with project.db.connect() as conn:
        owners = dict(conn.execute(select(intents.c.intent_id, intents.c.owner_run_id)).all())
    assert (owners[ids[0]], owners[ids[2]], owners[ids[4]], owners[ids[5]]) == ("run-a", "run-b", None, None)
    assert _moves_to(project, ids, "committing") == {ids[0], ids[3]}
    assert _moves_to(project, ids, "failed") == {ids[4], ids[5]}
