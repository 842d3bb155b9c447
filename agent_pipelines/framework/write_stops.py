"""Why a write may not run now: a kill switch covers it (the intent parks) or its intent is stopped
(quarantined or parked: WRITES_STOPPED). The gateway checks before a write (ToolGateway._admit_write)
and again first in the write's own transaction, with the run's claim (ToolGateway._write_fence)."""

from sqlalchemy import Connection, bindparam, select

from agent_pipelines.framework import controls
from agent_pipelines.framework.claims import WRITES_STOPPED
from agent_pipelines.framework.safe_data import printable_label as _label
from agent_pipelines.framework.tables import intents
from agent_pipelines.framework.tools import ToolBlocked


class KillSwitchEngaged(Exception):
    """A kill switch covers this workflow or tool: no write passes; the intent parks."""

    def __init__(self, engaged: controls.Engaged, tool: str | None = None) -> None:
        super().__init__(engaged.describe() + (f"; write {tool!r} not attempted" if tool else ""))
        self.engaged = engaged


class Stopped(Exception):
    """Why a write (of `tool`) may not run now: raised inside the write's transaction, recorded as a
    blocked call once that transaction rolled back; `error` is what the caller gets."""

    def __init__(self, rule: str, reason: str, error: Exception, tool: str) -> None:
        super().__init__(reason)
        self.rule, self.reason, self.error, self.tool = rule, reason, error, tool


_STATE = select(intents.c.state).where(intents.c.intent_id == bindparam("p_id"))  # built once (sql.py)


def why_stopped(conn: Connection, workflow: str, intent_id: str, tool: str) -> Stopped | None:
    engaged = controls.blocking(conn, workflow, tool)
    state = None if engaged else conn.execute(_STATE, {"p_id": intent_id}).scalar()
    return stopped_by(engaged, state, intent_id, tool)


def stopped_by(engaged: "controls.Engaged | None", state: str | None, intent_id: str, tool: str) -> Stopped | None:
    if engaged is not None:
        return Stopped("kill_switch", engaged.describe(), KillSwitchEngaged(engaged, tool), tool)
    if state in WRITES_STOPPED:
        reason = f"intent {intent_id} is {state}: this run writes nothing more"
        return Stopped("intent_stopped", reason, ToolBlocked(f"{_label(tool)}: {reason}"), tool)
    return None
