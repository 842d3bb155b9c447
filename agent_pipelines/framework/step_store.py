"""Where Dagster keeps what one step hands the next: in our database, table `step_outputs`, never in
Dagster's own storage.

An op output here is a Carry holding the intake as received (secrets and PII included: the workflow
acts on them), so Dagster's filesystem IO manager would leave raw intake in pickles under
$DAGSTER_HOME/storage. StepStore is the job's `io_manager` instead: each output is pickled into a row
of our database, which already holds the same intake (`intents.intake`) under the same access rules.
Nothing of it reaches Dagster's storage; the event log only gets the row's key and size.

Rows are keyed like Dagster's own output identifier (run id, step key, output name). Re-execution
from failure (the UI, `ReexecutionOptions.from_failure`) works because Dagster resolves the upstream
output of a step that was not re-run to the parent run that produced it (`upstream_output.run_id`).

Retention: at the end of every run the store deletes rows older than `retention_hours` whose intent
is terminal (a re-execution of a settled intent does nothing anyway) and rows that carry no intent.
Rows of intents that can still be re-executed or recovered (failed, needs_attention, waiting...) stay."""

import logging
import pickle
import threading
from collections import OrderedDict
from datetime import timedelta
from typing import Any

import dagster as dg
from sqlalchemy import Connection, delete, or_, select

from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.states import TERMINAL
from agent_pipelines.framework.tables import intents, step_outputs

log = logging.getLogger(__name__)

DEFAULT_RETENTION_HOURS = 24.0
ASSET_PREFIX = "asset:"  # step_key of an asset's value: loaded by asset key, newest first


def output_key(context: dg.OutputContext) -> tuple[str, str, str]:
    """(run_id, step_key, output_name) of an output; an asset's value is keyed by its asset key (and
    partition) so any later run can load it."""
    if context.has_asset_key:
        partition = context.partition_key if context.has_partition_key else ""
        return context.run_id, ASSET_PREFIX + context.asset_key.to_user_string(), partition
    name = context.name if context.mapping_key is None else f"{context.name}:{context.mapping_key}"
    # run_id is the run that produced the output: for a step a re-execution did not re-run, the parent's.
    return context.run_id, context.step_key, name


class _Handed:
    """Outputs stored by this process, until the step that takes them loads them (each once): with the
    in-process executor the next step gets the object instead of unpickling the row just written (a
    batch chunk's list of Carries: ~0.5 ms an intent, issue 11). The row is written all the same; a step
    in another process (Celery), a second reader or a re-execution reads it."""

    def __init__(self, size: int = 32) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._size = size

    def put(self, key: tuple[str, str, str], obj: Any) -> None:
        with self._lock:
            self._items[key] = obj
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def take(self, key: tuple[str, str, str]) -> Any:
        with self._lock:
            return self._items.pop(key, _MISSING)


_MISSING = object()
_HANDED = _Handed()


def save(db: Database, run_id: str, step_key: str, output_name: str, obj: Any) -> int:
    """Store one output (again, if a step retried within its run); returns the payload's size."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    # A Carry names its intent: the row is pruned once that intent is settled.
    intent_id = getattr(obj, "intent_id", None)
    row = dict(run_id=run_id, step_key=step_key, output_name=output_name, payload=payload,
               intent_id=intent_id if isinstance(intent_id, str) else None, created_at=utcnow())
    key = (step_outputs.c.run_id == run_id, step_outputs.c.step_key == step_key,
           step_outputs.c.output_name == output_name)

    def write(conn: Connection) -> None:
        conn.execute(delete(step_outputs).where(*key))
        conn.execute(step_outputs.insert().values(**row))

    db.transaction(write)
    return len(payload)


def load(db: Database, run_id: str | None, step_key: str, output_name: str) -> Any:
    """One stored output; run_id None: the newest row of that step key (an asset's latest value)."""
    c = step_outputs.c
    stmt = select(c.payload).where(c.step_key == step_key, c.output_name == output_name)
    stmt = stmt.where(c.run_id == run_id) if run_id is not None else stmt.order_by(c.id.desc()).limit(1)
    with db.connect() as conn:
        payload = conn.execute(stmt).scalar()
    if payload is None:
        raise LookupError(f"no stored output {step_key}.{output_name} of run {run_id or '(latest)'} in "
                          f"step_outputs (pruned after its intent was settled, or never produced)")
    # Only this store writes these rows, into our own database: the same trust as the intents table.
    return pickle.loads(payload)  # noqa: S301


def prune(db: Database, retention: timedelta) -> int:
    """Delete rows older than `retention` whose intent is terminal or that carry no intent."""
    c = step_outputs.c
    settled = select(intents.c.intent_id).where(intents.c.state.in_([str(s) for s in TERMINAL]))
    stmt = delete(step_outputs).where(c.created_at < utcnow() - retention,
                                      or_(c.intent_id.is_(None), c.intent_id.in_(settled)))
    return db.transaction(lambda conn: conn.execute(stmt).rowcount)


class StepStore(dg.ConfigurableIOManager):
    """The agent jobs' IO manager: step outputs in our database (see the module docstring)."""

    runtime: AgentRuntime
    retention_hours: float = DEFAULT_RETENTION_HOURS

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        run_id, step_key, name = output_key(context)
        size = save(self.runtime.db, run_id, step_key, name, obj)
        if not context.has_asset_key:  # an asset's value is read by any later run: always from its row
            _HANDED.put((run_id, step_key, name), obj)
        # The run log gets where the value is and its size, never the value.
        context.add_output_metadata({"stored_in": f"step_outputs {run_id}/{step_key}/{name}", "bytes": size})

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_key and context.upstream_output is None:
            partition = context.partition_key if context.has_partition_key else ""
            return load(self.runtime.db, None, ASSET_PREFIX + context.asset_key.to_user_string(), partition)
        upstream = context.upstream_output
        if upstream is None:
            raise dg.DagsterInvariantViolationError(f"input {context.name} has no upstream output to load")
        run_id, step_key, name = output_key(upstream)
        value = _HANDED.take((run_id, step_key, name)) if not upstream.has_asset_key else _MISSING
        if value is _MISSING:
            value = load(self.runtime.db, None if upstream.has_asset_key else run_id, step_key, name)
        # Which run's output a re-execution read shows in the run log (LOADED_INPUT metadata).
        context.add_input_metadata({"loaded_from": f"step_outputs {run_id}/{step_key}/{name}"})
        return value

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        try:
            pruned = prune(self.runtime.db, timedelta(hours=self.retention_hours))
        except Exception:  # noqa: BLE001 - retention is housekeeping: it never fails the run it follows
            log.warning("step_outputs: pruning failed; the next run tries again", exc_info=True)
            return
        if pruned:
            log.info("step_outputs: pruned %d rows of settled intents", pruned)
