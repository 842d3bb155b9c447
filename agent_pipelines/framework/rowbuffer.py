"""Where a step's bookkeeping rows go (trace rows, provenance sources, persisted step outputs, the replay
recording): straight to the database in a transaction of their own (a one-intent run), or into the
RowBuffer of a batch step, which writes all its intents' rows in one transaction, one executemany per
statement (issue 11: the rows were most of the batch path's per-intent transactions).

A buffered row is evidence or a cache that a re-run recomputes: a crash before the flush loses only
rows of intents still in an active state, which the recovery sweeper re-runs from a step that records
them again. So the rows of an intent are written with (in the transaction of) its every state
transition (StepRun.move: a park or outcome ends the run's work on it), and all of them before the
batch step hands its intents on (Batch.finish). What something depends on at once is never buffered:
the ledger row (with its write), the decided plan before the first write, the LLM call whose tokens
the budget counts right after it.

A batch step may also leave an intent's move to commit with the rows (`defer`, StepRun.move's
`with_chunk`): moves nothing acts on before the step ends. They run after the rows, in the order made."""

import itertools
import threading
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Connection, Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite

from agent_pipelines.framework.db import Database

Deferred = Callable[[Connection], None]  # a statement (an intent's move) run in the flush transaction


@dataclass(frozen=True)
class RowKind:
    """One statement shape: a plain INSERT, an INSERT that ignores (`ignore`) or replaces (`upsert`) a
    row with the same `keys`, or an UPDATE of the row with those `keys`. `rank` orders a flush: an
    UPDATE after the INSERT of its row."""

    table: Table
    how: str  # insert | ignore | upsert | update
    keys: tuple[str, ...] = ()
    rank: int = 0

    def statement(self, conn: Connection, columns: list[str]) -> Any:
        return _statement(self, conn.dialect.name, tuple(columns))

    def build(self, dialect: str, columns: tuple[str, ...]) -> Any:
        t = self.table
        if self.how == "insert":
            return t.insert()
        if self.how == "update":
            return (t.update().where(*[t.c[k] == bindparam(f"k_{k}") for k in self.keys])
                    .values({c: bindparam(f"v_{c}") for c in columns if c not in self.keys}))
        stmt = (sqlite if dialect == "sqlite" else postgresql).insert(t)
        if self.how == "ignore":
            return stmt.on_conflict_do_nothing(index_elements=list(self.keys))
        return stmt.on_conflict_do_update(index_elements=list(self.keys),
                                          set_={c: stmt.excluded[c] for c in columns if c not in self.keys})


@lru_cache(maxsize=256)
def _statement(kind: RowKind, dialect: str, columns: tuple[str, ...]) -> Any:
    """Each shape built once (sql.py says why)."""
    return kind.build(dialect, columns)


def write_rows(conn: Connection, rows: list[tuple[RowKind, dict[str, Any]]]) -> None:
    """`rows` in one executemany per kind (by rank, then first appearance; each kind's rows in order).
    Rows an ignore/upsert kind keys alike collapse first (first/last wins, as one by one would), so a
    multi-row statement never hits its own row twice."""
    kinds: dict[RowKind, list[dict[str, Any]]] = {}
    for kind, params in rows:
        kinds.setdefault(kind, []).append(params)
    for kind in sorted(kinds, key=lambda k: k.rank):  # stable: first appearance within a rank
        params = kinds[kind]
        if kind.how in ("ignore", "upsert"):
            by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
            for p in params:
                key = tuple(p[k] for k in kind.keys)
                if kind.how == "upsert" or key not in by_key:
                    by_key[key] = p
            params = list(by_key.values())
        columns = list(params[0])
        if kind.how == "update":
            params = [{(f"k_{c}" if c in kind.keys else f"v_{c}"): v for c, v in p.items()} for p in params]
        conn.execute(kind.statement(conn, columns), params)


class Sink(Protocol):
    def put(self, kind: RowKind, params: dict[str, Any]) -> None: ...

    def flush(self) -> int:
        """Write this intent's pending rows now (before reading them back)."""
        ...

    def take(self) -> list[tuple[RowKind, dict[str, Any]]]:
        """This intent's pending rows, for a transaction of the caller's to write (StepRun.move)."""
        ...

    def put_back(self, rows: list[tuple[RowKind, dict[str, Any]]]) -> None:
        """Rows taken whose transaction did not commit: pending again."""
        ...

    def defer(self, fn: Deferred) -> None:
        """Run `fn` in the transaction that writes this intent's rows (after them)."""
        ...

    def take_deferred(self) -> list[Deferred]:
        """This intent's deferred statements, for a transaction of the caller's (before its own move)."""
        ...


class Direct:
    """Each row now, in a transaction of its own (retried on transient errors: a lost trace row is
    evidence lost)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, kind: RowKind, params: dict[str, Any]) -> None:
        self.db.transaction(lambda conn: write_rows(conn, [(kind, params)]))

    def flush(self) -> int:
        return 0  # nothing is ever pending

    def take(self) -> list[tuple[RowKind, dict[str, Any]]]:
        return []

    def put_back(self, rows: list[tuple[RowKind, dict[str, Any]]]) -> None:
        if rows:
            self.db.transaction(lambda conn: write_rows(conn, rows))

    def defer(self, fn: Deferred) -> None:
        self.db.transaction(fn)

    def take_deferred(self) -> list[Deferred]:
        return []


def write_pending(conn: Connection, rows: list[tuple[RowKind, dict[str, Any]]], deferred: list[Deferred]) -> None:
    write_rows(conn, rows)
    run_deferred(conn, deferred)


def run_deferred(conn: Connection, deferred: list[Deferred]) -> None:
    """The deferred statements in the order made; consecutive ones of a kind that has a set-based form
    (a static `run_many(conn, items)`: steps.DeferredMove) run as one call."""
    for kind, group in itertools.groupby(deferred, key=type):
        items = list(group)
        run_many = getattr(kind, "run_many", None)
        if run_many is not None:
            run_many(conn, items)
        else:
            for fn in items:
                fn(conn)


class RowBuffer:
    """The rows of one batch step, per intent, until the step flushes them (or a transition of their
    intent takes them along). Thread-safe: a batch's proposals run on threads."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._seq = itertools.count()  # a full flush writes the rows in the order they came
        self._rows: dict[str, list[tuple[int, RowKind, dict[str, Any]]]] = {}
        self._deferred: dict[str, list[tuple[int, Deferred]]] = {}

    def sink(self, intent_id: str) -> "Buffered":
        return Buffered(self, intent_id)

    def add(self, intent_id: str, kind: RowKind, params: dict[str, Any]) -> None:
        with self._lock:
            self._rows.setdefault(intent_id, []).append((next(self._seq), kind, params))

    def defer(self, intent_id: str, fn: Deferred) -> None:
        with self._lock:
            self._deferred.setdefault(intent_id, []).append((next(self._seq), fn))

    def _pop(self, store: dict[str, list[Any]], intent_id: str | None) -> list[Any]:
        """Remove and return the entries of `store` (of one intent), in the order they came."""
        taken: list[Any] = []
        with self._lock:
            for i in ([intent_id] if intent_id is not None else list(store)):
                taken += store.pop(i, [])
        return sorted(taken, key=lambda entry: entry[0])

    def take(self, intent_id: str | None = None) -> list[tuple[RowKind, dict[str, Any]]]:
        """Remove and return the pending rows (of one intent)."""
        return [(kind, params) for _, kind, params in self._pop(self._rows, intent_id)]

    def take_deferred(self, intent_id: str | None = None) -> list[Deferred]:
        return [fn for _, fn in self._pop(self._deferred, intent_id)]

    def flush(self, intent_id: str | None = None) -> int:
        """Write the pending rows (of one intent), then run the deferred moves, in one transaction."""
        rows, deferred = self.take(intent_id), self.take_deferred(intent_id)
        if rows or deferred:
            self.db.transaction(lambda conn: write_pending(conn, rows, deferred))
        return len(rows)


class Buffered:
    """One intent's rows into a batch step's buffer."""

    def __init__(self, buffer: RowBuffer, intent_id: str) -> None:
        self.buffer, self.intent_id = buffer, intent_id

    def put(self, kind: RowKind, params: dict[str, Any]) -> None:
        self.buffer.add(self.intent_id, kind, params)

    def flush(self) -> int:
        return self.buffer.flush(self.intent_id)

    def take(self) -> list[tuple[RowKind, dict[str, Any]]]:
        return self.buffer.take(self.intent_id)

    def put_back(self, rows: list[tuple[RowKind, dict[str, Any]]]) -> None:
        for kind, params in rows:
            self.buffer.add(self.intent_id, kind, params)

    def defer(self, fn: Deferred) -> None:
        self.buffer.defer(self.intent_id, fn)

    def take_deferred(self) -> list[Deferred]:
        return self.buffer.take_deferred(self.intent_id)
