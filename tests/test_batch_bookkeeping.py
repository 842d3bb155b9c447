"""The batch path's bookkeeping written per chunk-step (framework/rowbuffer.py, issue 11): every intent
keeps the same records as in the one-intent job (trace rows, sources, step outputs, the replay
recording, its state history), a park writes the intent's pending rows with its transition, and the
per-intent cost in transactions stays set-based."""

from collections import Counter

from sqlalchemy import event, func, select

from agent_pipelines import bench
from agent_pipelines.framework import ledger
from agent_pipelines.framework.provenance import load_sources, load_sources_many
from agent_pipelines.framework.rowbuffer import RowBuffer, RowKind, write_rows
from agent_pipelines.framework.tables import (intent_runs, intent_steps, intent_transitions, intents, policy_decisions,
                                             tool_calls)
from tests.helpers import WF, register, run_intent, state
from tests.test_batch import _batch, _duplicates


def _records(project, intent_id):  # type: ignore[no-untyped-def]
    """What an intent's run left, without run ids and clocks: comparable across the two job shapes."""
    with project.db.connect() as conn:
        calls = conn.execute(select(tool_calls.c.step, tool_calls.c.tool, tool_calls.c.status)
                             .where(tool_calls.c.intent_id == intent_id).order_by(tool_calls.c.id)).all()
        decisions = conn.execute(select(policy_decisions.c.subject, policy_decisions.c.decision, policy_decisions.c.rule)
                                 .where(policy_decisions.c.intent_id == intent_id)).all()
        kept = conn.execute(select(intent_steps.c.step).where(intent_steps.c.intent_id == intent_id)).scalars().all()
        run = conn.execute(select(intent_runs.c.decision, intent_runs.c.rule, intent_runs.c.planned_writes)
                           .where(intent_runs.c.intent_id == intent_id)).one()
        moves = conn.execute(select(intent_transitions.c.from_state, intent_transitions.c.to_state)
                             .where(intent_transitions.c.intent_id == intent_id,  # not the registration
                                    intent_transitions.c.from_state.is_not(None))
                             .order_by(intent_transitions.c.id)).all()
    return {"calls": [tuple(c) for c in calls], "decisions": [tuple(d) for d in decisions],
            "kept": sorted(s if not s.startswith(("trusted:", "untrusted:")) else s.split(":")[0] for s in kept),
            "run": (run.decision, run.rule, [w["action"] for w in run.planned_writes]),
            "moves": [tuple(m) for m in moves]}


def test_a_batch_intent_keeps_the_records_of_a_one_intent_run(project):
    with project.db.begin() as conn:
        bench.seed(conn, 4)
    docs = bench.intakes(4)
    ids = bench.register(project.db, WF, docs[:3])
    alone = register(project, docs[3])
    assert run_intent(project, alone).success and state(project, alone) == "completed"
    assert _batch(project, ids, chunk_size=2).success
    expected = _records(project, alone)
    assert expected["calls"] and expected["decisions"] and "commit" in expected["kept"]
    for intent_id in ids:
        assert _records(project, intent_id) == expected
    assert _duplicates(project) == 0


def test_the_batch_path_costs_few_transactions_per_intent(project):
    """Issue 11: ~56 transactions an intent before the bookkeeping went per chunk-step, 20 before the moves
    went with the chunk, 8 before the move to committing did; a guard against sliding back
    (scripts/profile_batch.py's figures, with the chunks' share at 20 intents)."""
    n = 20
    with project.db.begin() as conn:
        bench.seed(conn, n)
    ids = bench.register(project.db, WF, bench.intakes(n))
    begins: Counter[str] = Counter()

    def count(conn) -> None:  # type: ignore[no-untyped-def]
        begins["writer" if conn.get_execution_options().get("agent_pipelines_writer") else "reader"] += 1

    engines = {project.db.engine, project.db.reader}  # PostgreSQL reads on their own engine (db.make_reader)
    for engine in engines:
        event.listen(engine, "begin", count)
    try:
        assert _batch(project, ids, chunk_size=n).success
    finally:
        for engine in engines:
            event.remove(engine, "begin", count)
    assert [state(project, i) for i in ids] == ["completed"] * n
    # 2.35 writers and 4.75 readers an intent here (moves with the chunk, the chunk's move to committing in
    # one transaction, chunk reads of sources and ledger); 3.3 writers before that move went per chunk
    assert begins["writer"] / n <= 3, begins
    assert (begins["writer"] + begins["reader"]) / n <= 8, begins


def test_the_batch_path_builds_no_statement_per_intent(project):
    """A statement built for each call (a new select/insert object, rather than one built once and run with
    its values as parameters) costs more than running it: the invoice tools' reads and writes once did
    that, 18 times an intent (~13 % of the batch path). Counted as new statement objects reaching the
    engines: per chunk-step they are a constant, so a batch twice as large builds as many."""
    with project.db.begin() as conn:
        bench.seed(conn, 14)
    ids = bench.register(project.db, WF, bench.intakes(14))
    kept: list[object] = []  # every statement seen stays alive, so that no new one reuses an id
    seen: set[int] = set()
    built = Counter[str]()
    batch = {"name": "warm-up"}

    def on_execute(conn, clause, multiparams, params, options) -> None:  # type: ignore[no-untyped-def]
        if id(clause) not in seen:
            seen.add(id(clause))
            kept.append(clause)
            built[batch["name"]] += 1

    engines = {project.db.engine, project.db.reader}
    for engine in engines:
        event.listen(engine, "before_execute", on_execute)
    try:
        # the warm-up batch builds what is built once per process (cached statements, lazy first uses)
        for name, chunk in (("warm-up", ids[:2]), ("4 intents", ids[2:6]), ("8 intents", ids[6:])):
            batch["name"] = name
            assert _batch(project, chunk, chunk_size=8).success
    finally:
        for engine in engines:
            event.remove(engine, "before_execute", on_execute)
    assert [state(project, i) for i in ids] == ["completed"] * 14 and _duplicates(project) == 0
    assert built["4 intents"] > 0  # the chunk-steps' own (their IN lists) are counted
    assert built["8 intents"] - built["4 intents"] < 4, built  # fewer than one more per added intent


def test_a_row_buffer_writes_in_order_and_a_move_takes_its_intents_rows(project):
    db = project.db
    steps = RowKind(intent_steps, "upsert", ("intent_id", "step"))
    sources = RowKind(intent_steps, "ignore", ("intent_id", "step"))
    buf = RowBuffer(db)
    a, b = buf.sink("i-a"), buf.sink("i-b")
    now = bench.utcnow()
    a.put(steps, {"intent_id": "i-a", "step": "read", "output": {"v": 1}, "run_id": "r", "at": now})
    b.put(steps, {"intent_id": "i-b", "step": "read", "output": {"v": 1}, "run_id": "r", "at": now})
    a.put(steps, {"intent_id": "i-a", "step": "read", "output": {"v": 2}, "run_id": "r", "at": now})  # last wins
    a.put(sources, {"intent_id": "i-a", "step": "trusted:x", "output": {"n": 1}, "run_id": "r", "at": now})
    a.put(sources, {"intent_id": "i-a", "step": "trusted:x", "output": {"n": 2}, "run_id": "r", "at": now})  # ignored

    def kept(intent_id):  # type: ignore[no-untyped-def]
        with db.connect() as conn:
            return dict(conn.execute(select(intent_steps.c.step, intent_steps.c.output)
                                     .where(intent_steps.c.intent_id == intent_id)).all())

    # what a transition takes along (StepRun.move) is only its intent's, in the order it came
    taken = a.take()
    assert [k.how for k, _ in taken] == ["upsert", "upsert", "ignore", "ignore"]
    db.transaction(lambda conn: write_rows(conn, taken))
    assert kept("i-a") == {"read": {"v": 2}, "trusted:x": {"n": 1}}
    assert kept("i-b") == {} and buf.flush() == 1 and kept("i-b") == {"read": {"v": 1}}
    assert buf.flush() == 0
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(intent_steps)).scalar_one() == 3


def test_what_a_batch_step_reads_for_its_chunk_is_what_each_intent_would_read(project):
    """The commit and validate steps read the chunk's provenance sources and ledger rows in one statement
    each (provenance.load_sources_many, ledger.with_writes): the same as one intent at a time."""
    with project.db.begin() as conn:
        bench.seed(conn, 3)
    ids = bench.register(project.db, WF, bench.intakes(3))
    assert _batch(project, ids[:2], chunk_size=2).success  # two with sources and writes, one without
    with project.db.connect() as conn:
        intakes = dict(conn.execute(select(intents.c.intent_id, intents.c.intake).where(intents.c.intent_id.in_(ids))).all())
        many = load_sources_many(conn, intakes)
        assert [many[i] for i in ids] == [load_sources(conn, i) for i in ids]
        assert many[ids[0]].trusted and not many[ids[2]].trusted
        assert ledger.with_writes(conn, ids) == {i for i in ids if ledger.has_writes(project.db, i)} == set(ids[:2])
