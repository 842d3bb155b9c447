"""Inbox files known by identity. An inbox sensor lists its folder each tick and registers every file
it has not seen: known means a row in `inbox_files` with the same name and content (a file moved in
with an old mtime is new; the same bytes under the same name are not). That table is the cursor: a
row is written only after the file's intent exists, so a file that failed on an infrastructure error
has no row and is tried again on the next tick."""

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, select, update

from agent_pipelines.framework.db import Database, is_transient, utcnow
from agent_pipelines.framework.intents import Intent, IntentStore, digest, file_intent_id, get_many, insert_intent
from agent_pipelines.framework.rowbuffer import RowKind, write_rows
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.tables import inbox_files
from agent_pipelines.framework.triggers import (
    MAX_FILE_BYTES, content_row, oversized_digest, register_content, register_oversized, waiting_correlations)
from agent_pipelines.framework.workflow import Workflow

BATCH = 1000  # new files read per tick (~2-4 ms each): keeps a tick well inside the sensor gRPC timeout
CHUNK = 200  # new files registered per transaction (a chunk that fails goes one file at a time)


@dataclass(frozen=True)
class InboxEntry:
    path: Path
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stat_key(self) -> tuple[str, int, int]:
        return (self.name, self.size, self.mtime_ns)


@dataclass
class KnownFiles:
    """A sensor's rows of inbox_files, loaded once per tick, as sets: an unchanged file costs a lookup."""

    stats: set[tuple[str, int, int]] = field(default_factory=set)
    contents: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def load(cls, db: Database, sensor: str) -> "KnownFiles":
        f = inbox_files.c
        known = cls()
        with db.connect() as conn:
            for name, size, mtime_ns, content_digest in conn.execute(
                    select(f.name, f.size, f.mtime_ns, f.content_digest).where(f.sensor == sensor)):
                known.stats.add((name, size, mtime_ns))
                known.contents.add((name, content_digest))
        return known


@dataclass
class InboxTick:
    """What one pass over the inbox did."""

    registered: list[Intent] = field(default_factory=list)  # intents of files new to the table
    unsettled: int = 0  # files still being written, left for a later tick
    more: bool = False  # the batch cap was reached; the rest waits for the next tick
    error: str | None = None  # the infrastructure error that stopped the pass early
    known: int = 0  # files the table holds for this sensor after the pass


def list_inbox(root: Path, *, settle_s: float, now_ns: int, log: Any) -> tuple[list[InboxEntry], int]:
    """The regular files of `root` that are complete, oldest first, and how many were still being
    written. Anything else is skipped with a logged reason, never an error: a stray folder or link must
    not stop the inbox."""
    found, young = _scan(root, settle_s=settle_s, now_ns=now_ns, log=log)
    return found, len(young)


def _scan(root: Path, *, settle_s: float, now_ns: int, log: Any) -> tuple[list[InboxEntry], list[InboxEntry]]:
    """(complete files oldest first, files still being written). `log` None: say nothing (a watch
    lists the folder many times a tick)."""
    if not root.is_dir():
        return [], []
    found, young = [], []
    with os.scandir(root) as it:
        for e in it:
            reason = _not_a_candidate(e)
            if reason:
                if log is not None:
                    log.info(f"{e.name}: skipped ({reason})")
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we were listing: nothing to register
            entry = InboxEntry(Path(e.path), st.st_size, st.st_mtime_ns)
            # A writer may still be appending; an mtime far in the future (set on purpose) is settled.
            if abs(now_ns - st.st_mtime_ns) < settle_s * 1e9:
                if log is not None:
                    log.info(f"{e.name}: modified less than {settle_s:g}s ago, left for a later tick")
                young.append(entry)
                continue
            found.append(entry)
    return sorted(found, key=lambda f: (f.mtime_ns, f.name)), young


def wait_for_new_files(db: Database, sensor: str, root: Path, *, settle_s: float, seconds: float,
                       poll_s: float = 0.05) -> bool:
    """Wait up to `seconds` for a complete file this sensor does not know; True as soon as there is one.

    Why: Dagster's sensor daemon evaluates a sensor at most every 5 s (a fixed loop), so a file waits
    2.5 s on average before a tick even looks, and a file still inside its settle window when the tick
    lists the folder waits a whole further loop. A tick that watches the folder for most of that loop
    picks a file up within `poll_s` of it landing (plus what is left of its settle window). Reads
    nothing and writes nothing: the caller registers files as a tick without a watch would, so the
    settle rule (and every guarantee after it) is the same. Between listings only the folder's own
    mtime is looked at (one stat): a file created, renamed in or removed changes it; the folder is
    listed again when it changes or when a file still being written reaches the end of its settle
    window. A file rewritten in place changes only its own mtime: the next tick's full listing sees it."""
    until = time.monotonic() + seconds
    known = KnownFiles.load(db, sensor).stats
    seen_dir: int | None = None
    relist_at = 0.0
    while True:
        try:
            dir_mtime = os.stat(root).st_mtime_ns
        except FileNotFoundError:
            dir_mtime = None
        now = time.monotonic()
        if dir_mtime is not None and (dir_mtime != seen_dir or now >= relist_at):
            seen_dir = dir_mtime
            now_ns = time.time_ns()
            found, young = _scan(root, settle_s=settle_s, now_ns=now_ns, log=None)
            if any(e.stat_key not in known for e in found):
                return True
            pending = [e for e in young if e.stat_key not in known]
            # the first moment a young file is old enough to be read (same rule as list_inbox)
            relist_at = now + min(((e.mtime_ns - now_ns) / 1e9 + settle_s for e in pending), default=math.inf)
        if now >= until:
            return False
        time.sleep(max(0.0, min(poll_s, until - now, relist_at - now)))


def _not_a_candidate(e: os.DirEntry[str]) -> str | None:
    if e.name.startswith("."):
        return "dotfile"
    if e.is_symlink():
        return "symbolic link"
    if e.is_dir(follow_symlinks=False):
        return "directory"
    if not e.is_file(follow_symlinks=False):
        return "not a regular file"
    return None


def ingest_inbox(store: IntentStore, wf: Workflow, sensor: str, root: Path,
                 parse: Callable[[str, bytes], BaseModel], *, settle_s: float, log: Any,
                 batch: int = BATCH, now_ns: int | None = None) -> InboxTick:
    """Register every file of `root` that `inbox_files` does not know yet (up to `batch` reads), a chunk
    of files per transaction (_ingest_chunk); a file the chunk cannot take goes one at a time."""
    known = KnownFiles.load(store.db, sensor)
    out = InboxTick()
    entries, out.unsettled = list_inbox(root, settle_s=settle_s, now_ns=time.time_ns() if now_ns is None else now_ns,
                                        log=log)
    todo: list[InboxEntry] = []
    for entry in entries:
        if entry.stat_key in known.stats:
            continue  # unchanged since it was registered: not even read
        if len(todo) >= batch:
            out.more = True
            break
        todo.append(entry)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        try:
            took = _ingest_chunk(store, wf, sensor, chunk, parse, known)
        except Exception as exc:  # noqa: BLE001 - decided below: stop the tick or take the files one at a time
            if is_transient(exc):
                out.error = f"{chunk[0].name} and {len(chunk) - 1} more: {type(exc).__name__}: {exc}"
                log.error(f"{out.error}; stopping this tick, the files are retried on the next one")
                break
            # One file's value the database refuses fails the chunk's transaction: one at a time, that
            # file is skipped (and retried) alone.
            log.warning(f"{len(chunk)} files together: {type(exc).__name__}: {exc}; registering them one at a time")
            took = Chunk(alone=set(chunk))
        for entry in chunk:  # in the order listed, the chunk's registered files and its one-at-a-time ones
            if entry == took.stopped_at and out.error is None:
                out.error = took.error
                log.error(f"{out.error}; stopping this tick, the file is retried on the next one")
            if entry in took.done:  # registered with the chunk: handed on even if the tick stopped since
                out.registered.append(took.done[entry])
            elif entry in took.alone and out.error is None and (
                    intent := _ingest_alone(store, wf, sensor, entry, parse, known, out, log)):
                out.registered.append(intent)
        if out.error is not None:
            break
    out.known = len(known.contents)
    return out


def _ingest_alone(store: IntentStore, wf: Workflow, sensor: str, entry: InboxEntry,
                  parse: Callable[[str, bytes], BaseModel], known: KnownFiles, out: InboxTick, log: Any) -> Intent | None:
    """One file in transactions of its own; an infrastructure error stops the tick (out.error)."""
    try:
        return _ingest_one(store, wf, sensor, entry, parse, known)
    except FileNotFoundError:
        log.info(f"{entry.name}: gone before it was read")  # nothing left to retry
    except Exception as exc:  # noqa: BLE001 - decided below: stop the tick or skip only this file
        if is_transient(exc):
            # The database (or the disk) is failing: nothing after this file would fare better.
            out.error = f"{entry.name}: {type(exc).__name__}: {exc}"
            log.error(f"{out.error}; stopping this tick, the file is retried on the next one")
        else:
            # This file's own problem (unreadable, a value the database refuses): it is not recorded, so
            # it is retried next tick, and it does not hold back the files after it.
            log.error(f"{entry.name}: {type(exc).__name__}: {exc}; skipped this tick, retried on the next one")
    return None


@dataclass
class Chunk:
    """What _ingest_chunk did with a chunk of files."""

    done: dict[InboxEntry, Intent] = field(default_factory=dict)  # registered, with their inbox_files rows
    alone: set[InboxEntry] = field(default_factory=set)  # left to _ingest_one
    stopped_at: InboxEntry | None = None  # parsing it met an infrastructure error: it and the rest wait
    error: str | None = None


def _ingest_chunk(store: IntentStore, wf: Workflow, sensor: str, chunk: list[InboxEntry],
                  parse: Callable[[str, bytes], BaseModel], known: KnownFiles) -> Chunk:
    """The chunk's plain new files (read, parsed, not answering a waiting intent) registered in one
    transaction with their inbox_files rows, instead of four transactions a file (issue 11: a flood's
    ingestion). The files left to _ingest_one: too big to read, unreadable or gone, touched without a
    content change, or a possible follow-up (triggers.answer_waiting)."""
    out = Chunk()
    read: list[tuple[InboxEntry, bytes, str, str]] = []
    for entry in chunk:
        try:
            content = entry.path.read_bytes() if entry.size <= MAX_FILE_BYTES else None
        except OSError:
            content = None  # _ingest_one says what happened to it
        content_digest = digest(content) if content is not None else ""
        if content is None or (entry.name, content_digest) in known.contents:
            out.alone.add(entry)
        else:
            read.append((entry, content, content_digest, file_intent_id(wf.name, content)))
    with store.db.connect() as conn:
        existing = get_many(conn, list({intent_id for *_, intent_id in read}))
    rows: list[tuple[InboxEntry, str, str, dict[str, Any] | None]] = []
    correlations: dict[InboxEntry, str] = {}
    for entry, content, content_digest, intent_id in read:
        row = None
        if intent_id not in existing:  # content seen before is its existing intent (register_content)
            try:
                row, data = content_row(wf, entry.path, content, parse)
            except Exception as exc:  # noqa: BLE001 - a parser's refusal is a row; this is something else
                if is_transient(exc):  # the database (or the disk) is failing: stop the tick here
                    out.stopped_at, out.error = entry, f"{entry.name}: {type(exc).__name__}: {exc}"
                    break
                out.alone.add(entry)  # _ingest_one meets it again, logs it and skips the file
                continue
            if data is not None:
                correlations[entry] = row["correlation_id"]
        rows.append((entry, content_digest, intent_id, row))
    waiting = waiting_correlations(store.db, wf.name, set(correlations.values()))
    out.alone |= {entry for entry, correlation in correlations.items() if correlation in waiting}
    rows = [r for r in rows if r[0] not in out.alone]
    if not rows:
        return out

    def register(conn: Connection) -> dict[str, Intent]:
        for _, _, _, row in rows:
            if row is not None:
                insert_intent(conn, **row)
        intents = get_many(conn, [intent_id for _, _, intent_id, _ in rows])
        # Only with its intent: a row without its intent would hide the file forever.
        write_rows(conn, [(FILE_ROW, _file_row(sensor, entry, content_digest, intents[intent_id]))
                          for entry, content_digest, intent_id, _ in rows])
        return intents

    intents = store.db.transaction(register)
    for entry, content_digest, intent_id, _ in rows:
        out.done[entry] = intents[intent_id]
        known.stats.add(entry.stat_key)
        known.contents.add((entry.name, content_digest))
    return out


def _ingest_one(store: IntentStore, wf: Workflow, sensor: str, entry: InboxEntry,
                parse: Callable[[str, bytes], BaseModel], known: KnownFiles) -> Intent | None:
    """Register one file unless its content is known under its name. Returns the intent of a file new
    to the table, None for known content (a touched file: same bytes change nothing)."""
    if entry.size > MAX_FILE_BYTES:
        content_digest = oversized_digest(entry.name, entry.size, entry.mtime_ns)  # never read into memory
        intent, _ = register_oversized(store, wf, entry.path, entry.size, entry.mtime_ns)
    else:
        content = entry.path.read_bytes()
        content_digest = digest(content)
        if (entry.name, content_digest) in known.contents:
            _remember_stat(store.db, sensor, entry, content_digest)
            known.stats.add(entry.stat_key)
            return None
        intent, _ = register_content(store, wf, entry.path, content, parse)
    # Only now that the intent exists: a row without its intent would hide the file forever.
    _record(store.db, sensor, entry, content_digest, intent)
    known.stats.add(entry.stat_key)
    known.contents.add((entry.name, content_digest))
    return intent


def _record(db: Database, sensor: str, entry: InboxEntry, content_digest: str, intent: Intent) -> None:
    with db.begin() as conn:
        write_rows(conn, [(FILE_ROW, _file_row(sensor, entry, content_digest, intent))])


FILE_ROW = RowKind(inbox_files, "ignore", ("sensor", "name", "content_digest"))


def _file_row(sensor: str, entry: InboxEntry, content_digest: str, intent: Intent) -> dict[str, Any]:
    rejected = intent.state == IntentState.REJECTED_INPUT
    return dict(sensor=sensor, name=entry.name, size=entry.size, mtime_ns=entry.mtime_ns,
                content_digest=content_digest, intent_id=intent.intent_id,
                outcome="rejected" if rejected else "registered", reason=intent.reason, first_seen_at=utcnow())


def _remember_stat(db: Database, sensor: str, entry: InboxEntry, content_digest: str) -> None:
    """A known file touched without a content change: keep its new size and mtime, so the next tick
    recognises it without reading it again."""
    f = inbox_files.c
    with db.begin() as conn:
        conn.execute(update(inbox_files).where(f.sensor == sensor, f.name == entry.name,
                                               f.content_digest == content_digest)
                     .values(size=entry.size, mtime_ns=entry.mtime_ns))
