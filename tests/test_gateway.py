"""The tool gateway: allowlist, typed params, timeouts, retries with capped backoff and jitter, fail-fast."""

import random
import threading

import pytest
from pydantic import BaseModel
from sqlalchemy import select, text

from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.tools import (Backoff, Impact, PermanentToolError, RetryableToolError, Tool, ToolBlocked,
                                             ToolKind, ToolRegistry, ToolTimeout)
from agent_pipelines.framework.ledger import WriteOutcome
from agent_pipelines.framework.policy import PolicyPack
from agent_pipelines.framework.tables import policy_decisions, tool_calls, writes
from agent_pipelines.framework.trace import Tracer


class Echo(BaseModel):
    value: int


def make_gateway(project, tools, allowed, sleeps=None):  # type: ignore[no-untyped-def]
    policy = PolicyPack(workflow="t", version="1", allowed_tools=tuple(allowed))
    tracer = Tracer(project.db, workflow="t", intent_id="t:1", run_id="run-1")
    return ToolGateway(ToolRegistry(tools), policy, project.db, tracer,
                       sleep=(sleeps.append if sleeps is not None else lambda s: None), rng=random.Random(7))


def flaky(failures: int, exc: type[Exception]):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    def fn(conn, p: Echo) -> dict:  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= failures:
            raise exc(f"attempt {calls['n']} failed")
        return {"echo": p.value, "db": conn.execute(text("select 1")).scalar_one()}

    return fn, calls


def trace_rows(project):  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return conn.execute(select(tool_calls).order_by(tool_calls.c.id)).mappings().all()


def test_transient_errors_are_retried_with_capped_exponential_backoff(project):
    fn, calls = flaky(3, RetryableToolError)
    sleeps: list[float] = []
    backoff = Backoff(max_attempts=5, base_s=0.1, cap_s=0.3)
    gw = make_gateway(project, [Tool("echo", Echo, ToolKind.READ, Impact.LOW, fn, backoff=backoff)], ["echo"], sleeps)
    assert gw.read("echo", {"value": 4}) == {"echo": 4, "db": 1}
    assert calls["n"] == 4 and len(sleeps) == 3
    # attempt n waits within [d/2, d] with d = min(cap, base * 2**(n-1)): 0.1, 0.2, then capped at 0.3
    for s, d in zip(sleeps, [0.1, 0.2, 0.3], strict=True):
        assert d / 2 <= s <= d
    assert len(set(sleeps)) == 3  # jittered, not constant
    row = trace_rows(project)[-1]
    assert (row["tool"], row["status"], row["attempts"]) == ("echo", "ok", 4)


def test_a_forked_worker_draws_its_own_backoff_jitter():
    """Warm run workers fork their pool from one parent (deploy/dagster.warm.yaml): the shared jitter
    source is reseeded in each child, so two children do not retry in step."""
    import os

    from agent_pipelines.framework import gateway

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draws, to the parent
        os.close(read_end)
        os.write(write_end, repr([gateway._JITTER.random() for _ in range(4)]).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        child = f.read()
    os.waitpid(pid, 0)
    parent = repr([gateway._JITTER.random() for _ in range(4)])  # the same state the child was forked with
    assert child and child != parent


def test_retries_stop_at_the_attempt_cap(project):
    fn, calls = flaky(10, RetryableToolError)
    gw = make_gateway(project, [Tool("echo", Echo, ToolKind.READ, Impact.LOW, fn, backoff=Backoff(max_attempts=3))],
                      ["echo"])
    with pytest.raises(RetryableToolError):
        gw.read("echo", {"value": 1})
    assert calls["n"] == 3
    assert trace_rows(project)[-1]["status"] == "error"


def test_permanent_errors_fail_fast(project):
    fn, calls = flaky(10, PermanentToolError)
    sleeps: list[float] = []
    gw = make_gateway(project, [Tool("echo", Echo, ToolKind.READ, Impact.LOW, fn)], ["echo"], sleeps)
    with pytest.raises(PermanentToolError):
        gw.read("echo", {"value": 1})
    assert calls["n"] == 1 and sleeps == []
    assert trace_rows(project)[-1]["attempts"] == 1


def test_a_hung_tool_times_out_and_is_retried(project):
    release = threading.Event()
    calls = {"n": 0}

    def slow(conn, p: Echo):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            release.wait(5)  # hangs until the test releases it
        return p.value

    gw = make_gateway(project, [Tool("slow", Echo, ToolKind.READ, Impact.LOW, slow, timeout_s=0.2)], ["slow"])
    try:
        assert gw.read("slow", {"value": 9}) == 9
    finally:
        release.set()
    assert calls["n"] == 2
    assert issubclass(ToolTimeout, RetryableToolError)


def endless_statement(conn) -> None:  # type: ignore[no-untyped-def]
    """A statement that runs until it is interrupted (30 s on PostgreSQL, unbounded on SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_sleep(30)"))
    else:
        conn.execute(text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"))


def test_a_local_tool_runs_in_the_callers_thread_and_its_statement_is_interrupted_at_its_deadline(project):
    calls: list[int] = []

    def fn(conn, p: Echo) -> dict:  # type: ignore[no-untyped-def]
        calls.append(threading.get_ident())
        if len(calls) == 1:
            endless_statement(conn)
        return {"echo": p.value, "db": conn.execute(text("select 1")).scalar_one()}

    # Only a timeout is retried: a second attempt that succeeds means the first ended as ToolTimeout.
    tool = Tool("q", Echo, ToolKind.READ, Impact.LOW, fn, timeout_s=0.3, retry_on=(ToolTimeout,), local=True)
    gw = make_gateway(project, [tool], ["q"])
    assert gw.read("q", {"value": 5}) == {"echo": 5, "db": 1}
    assert calls == [threading.get_ident()] * 2  # both attempts here, none in a pool thread
    row = trace_rows(project)[-1]
    assert (row["tool"], row["status"], row["attempts"]) == ("q", "ok", 2)
    # The connection went back to the pool usable: the next call runs on it at once.
    assert gw.read("q", {"value": 6}) == {"echo": 6, "db": 1}


def test_an_interrupted_local_write_rolls_back_with_its_ledger_row_and_lands_once_on_retry(project):
    attempts = {"n": 0}

    def put(conn, p: Echo) -> WriteOutcome:  # type: ignore[no-untyped-def]
        attempts["n"] += 1
        if attempts["n"] == 1:
            endless_statement(conn)
        return WriteOutcome(table="t", key=str(p.value), before=None, after={"value": p.value})

    tool = Tool("put", Echo, ToolKind.WRITE, Impact.LOW, put, timeout_s=0.3, retry_on=(ToolTimeout,), local=True)
    gw = make_gateway(project, [tool], ["put"])
    receipt = gw.write("put", {"value": 3}, action="put")
    # Committed by the second attempt: the first one's ledger row rolled back with its transaction.
    assert (receipt.status, attempts["n"]) == ("committed", 2)
    with project.db.connect() as conn:
        assert [r.status for r in conn.execute(select(writes))] == ["committed"]


def scratch_writes(project, fail: dict[str, type[Exception] | None]):  # type: ignore[no-untyped-def]
    """Three local write tools, each inserting its row in a scratch table; `fail[name]`, when set, is
    raised once by that tool after its insert (and cleared)."""
    with project.db.begin() as conn:
        conn.execute(text("CREATE TABLE scratch (k VARCHAR(20) PRIMARY KEY)"))

    def tool(name: str) -> Tool:
        def put(conn, p: Echo) -> WriteOutcome:  # type: ignore[no-untyped-def]
            conn.execute(text("INSERT INTO scratch (k) VALUES (:k)"), {"k": f"{name}{p.value}"})
            if (exc := fail.get(name)) is not None:
                fail[name] = None
                raise exc(f"{name} failed after its insert")
            return WriteOutcome(table="scratch", key=f"{name}{p.value}", before=None, after={"k": p.value})
        return Tool(name, Echo, ToolKind.WRITE, Impact.LOW, put, retry_on=(RetryableToolError,), local=True)

    return [tool(n) for n in ("a", "b", "c")]


def scratch(project) -> list[str]:  # type: ignore[no-untyped-def]
    with project.db.connect() as conn:
        return sorted(conn.execute(text("SELECT k FROM scratch")).scalars())


def test_an_intents_local_writes_land_together_or_not_at_all(project):
    fail: dict[str, type[Exception] | None] = {"c": PermanentToolError}
    gw = make_gateway(project, scratch_writes(project, fail), ["a", "b", "c"])
    planned = [(n, {"value": 1}, f"put_{n}") for n in ("a", "b", "c")]

    def plan_row(conn) -> None:  # type: ignore[no-untyped-def]
        conn.execute(text("INSERT INTO scratch (k) VALUES ('plan')"))

    assert gw.can_group(["a", "b", "c"]) and not gw.can_group(["a", "unknown"])
    with pytest.raises(PermanentToolError, match="c failed"):
        gw.write_all(planned, before=plan_row)
    # The third write failed: the two before it, their ledger rows and the caller's row rolled back with it.
    assert scratch(project) == []
    with project.db.connect() as conn:
        assert conn.execute(select(writes)).first() is None
    [error] = [r for r in trace_rows(project) if r["status"] == "error"]
    assert error["tool"] == "c" and "rolled back with it, not written: a, b" in error["error"]

    fail["b"] = RetryableToolError  # a transient failure: the whole transaction is tried again
    receipts = gw.write_all(planned, before=plan_row)
    assert [r.status for r in receipts] == ["committed"] * 3 and scratch(project) == ["a1", "b1", "c1", "plan"]
    assert [r["attempts"] for r in trace_rows(project) if r["status"] == "ok"] == [2, 2, 2]
    again = gw.write_all(planned)  # a retry of the same intent's writes finds their ledger rows
    assert [r.status for r in again] == ["already_committed"] * 3 and len(scratch(project)) == 4


def test_a_kill_switch_on_one_of_an_intents_writes_holds_all_of_them(project):
    from agent_pipelines.framework import controls
    from agent_pipelines.framework.write_stops import KillSwitchEngaged

    gw = make_gateway(project, scratch_writes(project, {}), ["a", "b", "c"])
    controls.set_kill_switch(project.db, on=True, actor="oncall", tool="c", reason="c frozen")
    with pytest.raises(KillSwitchEngaged, match="c frozen"):
        gw.write_all([(n, {"value": 1}, f"put_{n}") for n in ("a", "b", "c")])
    assert scratch(project) == []
    [blocked] = [r for r in trace_rows(project) if r["status"] == "blocked"]
    assert blocked["tool"] == "c"


def test_a_registry_of_statements_marks_its_tools_local_and_the_service_tools_stay_on_threads():
    from agent_pipelines.workflows.invoice_matching.tools import registry as invoices
    from agent_pipelines.workflows.refund.tools import registry as refunds

    echo = Tool("echo", Echo, ToolKind.READ, Impact.LOW, lambda c, p: None)
    assert ToolRegistry([echo], local=True).get("echo").local and not ToolRegistry([echo]).get("echo").local
    shipped = invoices()
    assert all(shipped.get(n).local for n in shipped.names())
    refund = refunds()  # reads and writes over HTTP: a pool thread keeps their timeout
    assert not any(refund.get(n).local for n in refund.names())


def test_an_external_call_cannot_be_declared_local():
    from agent_pipelines.framework.external import ExternalWrite

    with pytest.raises(ValueError, match="not local"):
        Tool("x", Echo, ToolKind.WRITE, Impact.LOW, lambda c, p: None, local=True,
             external=object.__new__(ExternalWrite))


def test_tools_outside_the_allowlist_are_blocked_and_recorded(project):
    fn, calls = flaky(0, RetryableToolError)
    gw = make_gateway(project, [Tool("echo", Echo, ToolKind.READ, Impact.LOW, fn)], allowed=[])
    with pytest.raises(ToolBlocked, match="not in the policy"):
        gw.read("echo", {"value": 1})
    with pytest.raises(ToolBlocked):
        gw.read("delete_everything", {"value": 1})
    assert calls["n"] == 0
    with project.db.connect() as conn:
        rules = conn.execute(select(policy_decisions.c.rule, policy_decisions.c.decision)).all()
    assert rules == [("tool_not_allowed", "deny"), ("tool_not_allowed", "deny")]
    assert [r["status"] for r in trace_rows(project)] == ["blocked", "blocked"]


def test_invalid_params_are_blocked_before_the_tool_runs(project):
    fn, calls = flaky(0, RetryableToolError)
    gw = make_gateway(project, [Tool("echo", Echo, ToolKind.READ, Impact.LOW, fn)], ["echo"])
    with pytest.raises(ToolBlocked, match="invalid_params|value"):
        gw.read("echo", {"value": "1; DROP TABLE writes"})
    assert calls["n"] == 0


def test_a_write_tool_cannot_be_called_as_a_read_and_writes_land_once(project):
    def put(conn, p: Echo) -> WriteOutcome:  # type: ignore[no-untyped-def]
        return WriteOutcome(table="t", key=str(p.value), before=None, after={"value": p.value})

    gw = make_gateway(project, [Tool("put", Echo, ToolKind.WRITE, Impact.HIGH, put)], ["put"])
    with pytest.raises(ToolBlocked, match="write tool"):
        gw.read("put", {"value": 1})
    first = gw.write("put", {"value": 1}, action="put")
    second = gw.write("put", {"value": 1}, action="put")
    assert (first.status, second.status) == ("committed", "already_committed")
    with project.db.connect() as conn:
        assert len(conn.execute(select(writes)).all()) == 1
