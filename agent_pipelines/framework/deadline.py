"""Deadlines for local tools (tools.Tool.local): the call runs in the caller's thread and its database
connection is interrupted when its time is up, instead of a pool thread per call waited on with a
timeout. The hop to a pool thread and back cost ~0.2 ms a call on this machine, ten calls an intent:
about a sixth of an intent on the batch path (issue 11).

One watchdog thread per process keeps the deadlines in a heap. A call registers (deadline, connection)
and marks itself done when it leaves; done entries are dropped when their deadline comes (all those
due within _GRAIN_S at one wake), and a call wakes the watchdog only when its deadline comes before
every one it waits for (the heap was empty, or a shorter timeout): registering costs no thread switch.
At a deadline whose call is still running it interrupts the connection: SQLite's `interrupt()`,
psycopg2's `cancel()`, both made to be called from another thread. The statement running fails, the
call's transaction rolls back, and the call raises ToolTimeout, which the gateway retries like any
timeout. A local tool that hangs outside a statement is not interrupted: that is what `local`
promises not to do."""

import heapq
import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection

from agent_pipelines.framework.tools import ToolTimeout

# The watchdog sleeps at least this long: the entries of calls that ended are dropped in one wake, not
# one wake a call. An interrupt comes up to this late.
_GRAIN_S = 0.05


class _Call:
    __slots__ = ("dbapi", "done", "fired")

    def __init__(self, dbapi: Any) -> None:
        self.dbapi, self.done, self.fired = dbapi, False, False


class Watchdog:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:  # also in a forked child: the parent's thread and lock state are not its own
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Call]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, conn: Connection, timeout_s: float) -> Iterator[None]:
        """Run the block on `conn`; past `timeout_s`, interrupt its statement and raise ToolTimeout."""
        call = _Call(conn.connection.dbapi_connection)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            wake = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, next(self._seq), call))
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="tool-deadlines", daemon=True)
                self._thread.start()
            elif wake:
                self._cond.notify()
        try:
            yield
        except Exception as exc:
            if call.fired:
                raise ToolTimeout(f"interrupted after {timeout_s}s ({type(exc).__name__}: {exc})") from exc
            raise
        finally:
            with self._cond:  # after this, the watchdog no longer touches the connection
                call.done, call.dbapi = True, None  # its entry stays until its deadline: not the connection

    def _watch(self) -> None:
        with self._cond:
            while True:
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _, call = self._heap[0]
                if call.done:
                    heapq.heappop(self._heap)
                    continue
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(max(left, _GRAIN_S))
                    continue
                heapq.heappop(self._heap)
                call.fired = True
                interrupt = getattr(call.dbapi, "interrupt", None) or call.dbapi.cancel  # sqlite3 | psycopg2
                try:
                    interrupt()
                except Exception:  # noqa: BLE001, S110 - the connection already failed: the call sees that
                    pass


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._reset)
