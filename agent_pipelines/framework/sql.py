"""Small portable SQL helpers (SQLite and PostgreSQL)."""

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any], keys: list[str]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING. Returns True when this call inserted the row.

    On PostgreSQL a concurrent inserter of the same key waits for the first transaction and then
    does nothing, so the UNIQUE constraint, not the isolation level, carries the dedupe."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)
    return conn.execute(stmt).rowcount == 1


def for_update(conn: Connection, stmt: Any) -> Any:
    """Row lock on PostgreSQL; SQLite already holds the database write lock (BEGIN IMMEDIATE)."""
    return stmt.with_for_update() if conn.dialect.name == "postgresql" else stmt


def upsert(conn: Connection, table: Table, values: dict[str, Any], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE: last writer wins, concurrent writers never collide."""
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = dialect.insert(table).values(**values)
    conn.execute(stmt.on_conflict_do_update(index_elements=keys,
                                            set_={k: stmt.excluded[k] for k in values if k not in keys}))
