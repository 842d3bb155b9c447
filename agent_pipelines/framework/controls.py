"""Operator controls: the kill switch (global, per workflow, per tool) and the rollout mode per workflow.

Both live in the `controls` table so every process sees a change on its next read: the gateway reads
the switch before every write, each step reads it before it starts, and the sensors read it before
they launch a run. History goes to `control_events`."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.policy import Mode
from agent_pipelines.framework.sql import upsert
from agent_pipelines.framework.tables import control_events, controls, parked_intents

GLOBAL = "global"


def switch_key(workflow: str | None = None, tool: str | None = None) -> str:
    if workflow and tool:
        raise ValueError("a kill switch scope is global, one workflow or one tool, not both")
    return f"workflow:{workflow}" if workflow else f"tool:{tool}" if tool else GLOBAL


@dataclass(frozen=True)
class Engaged:
    """An engaged kill switch: which scope, why, by whom."""

    key: str
    reason: str
    changed_by: str

    def describe(self) -> str:
        return f"kill switch {self.key} is on ({self.reason or 'no reason given'}; set by {self.changed_by})"


def _set(conn: Connection, key: str, kind: str, value: str, reason: str | None, actor: str) -> None:
    now = utcnow()
    upsert(conn, controls, {"key": key, "kind": kind, "value": value, "reason": reason, "changed_by": actor,
                            "changed_at": now}, ["key"])
    conn.execute(control_events.insert().values(key=key, value=value, reason=reason, changed_by=actor, at=now))


def set_kill_switch(db: Database, *, on: bool, actor: str, workflow: str | None = None, tool: str | None = None,
                    reason: str | None = None) -> str:
    key = switch_key(workflow, tool)
    if on and not (reason or "").strip():
        raise ValueError("turning a kill switch on needs a reason (it is shown to operators and in skip reasons)")
    with db.begin() as conn:
        _set(conn, key, "kill_switch", "on" if on else "off", reason, actor)
    return key


_ENGAGED = select(controls).where(controls.c.kind == "kill_switch", controls.c.value == "on")  # built once


def engaged_switches(conn: Connection) -> list[Engaged]:
    rows = conn.execute(_ENGAGED).mappings().all()
    return [Engaged(r["key"], r["reason"] or "", r["changed_by"]) for r in rows]


def blocking(conn: Connection, workflow: str, tool: str | None = None) -> Engaged | None:
    """The switch that stops `workflow` (and `tool`, for a write) right now, if any."""
    return covering(engaged_switches(conn), workflow, tool)


def switch_keys(workflow: str, tool: str | None = None) -> tuple[str, ...]:
    """The keys of the switches that stop `workflow` (and `tool`, for a write)."""
    return (GLOBAL, switch_key(workflow=workflow), *((switch_key(tool=tool),) if tool else ()))


def covering(switches: list[Engaged], workflow: str, tool: str | None = None) -> Engaged | None:
    """Of switches read earlier (engaged_switches), the one that stops `workflow` (and `tool`)."""
    keys = switch_keys(workflow, tool)
    for e in switches:
        if e.key in keys:
            return e
    return None


def launch_blocked(db: Database, workflow: str) -> Engaged | None:
    """For sensors: a global or workflow switch stops new runs (a tool switch parks at the write)."""
    with db.connect() as conn:
        return blocking(conn, workflow)


def set_mode(db: Database, workflow: str, mode: Mode, *, actor: str, reason: str | None = None) -> None:
    with db.begin() as conn:
        _set(conn, f"mode:{workflow}", "mode", Mode(mode).value, reason, actor)


def current_mode(db: Database, workflow: str, default: Mode) -> Mode:
    """The mode new runs of `workflow` are pinned to: the operator's setting, else the policy pack's."""
    with db.connect() as conn:
        value = conn.execute(select(controls.c.value).where(controls.c.key == f"mode:{workflow}")).scalar()
    return Mode(value) if value else default


def status(db: Database) -> list[dict[str, Any]]:
    with db.connect() as conn:
        return [dict(r) for r in conn.execute(select(controls).order_by(controls.c.key)).mappings()]


# -- parked intents -------------------------------------------------------------------------------
def park(conn: Connection, *, intent_id: str, workflow: str, scope: str, step: str, run_id: str | None,
         approval_id: str | None, carry: dict[str, Any] | None = None) -> None:
    conn.execute(parked_intents.insert().values(intent_id=intent_id, workflow=workflow, scope=scope, step=step,
                                                run_id=run_id, approval_id=approval_id, carry=carry,
                                                parked_at=utcnow()))


def get_park(conn: Connection, park_id: int) -> dict[str, Any]:
    return dict(conn.execute(select(parked_intents).where(parked_intents.c.id == park_id)).mappings().one())


def releasable(db: Database) -> list[dict[str, Any]]:
    """Parked intents whose switches are all off now: the release sensor resumes them."""
    p = parked_intents.c
    with db.connect() as conn:
        rows = conn.execute(select(parked_intents).where(p.released_at.is_(None)).order_by(p.id)).mappings().all()
        on = {e.key for e in engaged_switches(conn)}
    out = []
    for r in rows:
        wf_key, tool_scope = switch_key(workflow=r["workflow"]), r["scope"].startswith("tool:")
        if GLOBAL in on or wf_key in on or (tool_scope and r["scope"] in on):
            continue
        out.append(dict(r))
    return out
