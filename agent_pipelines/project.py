"""A working copy of agent_pipelines state: our database, the Dagster instance and the definitions.
The CLI and the tests build one of these; nothing here runs at import."""

import os
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel

from agent_pipelines.framework.db import Database
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.ledger import count_writes, duplicate_ledger_writes
from agent_pipelines.framework.recovery import partial_commits, stalled_continuations, stranded
from agent_pipelines.framework.runtime import database
from agent_pipelines.framework.signing import ApprovalKey, load_key
from agent_pipelines.runner import SensorTick, tick
from agent_pipelines.settings import Settings
from agent_pipelines.workflows import all_workflows

REPO_ROOT = Path(__file__).resolve().parent.parent


class Status(BaseModel):
    intents: dict[str, int]
    by_workflow: dict[str, dict[str, int]]
    writes: int
    duplicate_writes: int
    # Durable completion, from the tables each time: both are 0 once the recovery sweeper has run.
    stranded: int = 0  # not finished, not waiting, and no live run within its lease
    partial_commits: int = 0  # some but not all decided writes landed, and no live run


class Project:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def open(cls, state_dir: str | Path | None = None) -> "Project":
        project = cls(Settings.from_env(state_dir))
        project.prepare()
        return project

    def prepare(self) -> None:
        """Create the state folder, a Dagster home with our dagster.yaml, and migrate our database."""
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        home = s.dagster_home
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists() and (REPO_ROOT / "dagster.yaml").exists():
            shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
        self.db  # noqa: B018 - migrates on first use

    @property
    def db(self) -> Database:
        return database(self.settings.db_url)

    @cached_property
    def definitions(self) -> dg.Definitions:
        from agent_pipelines.definitions import build_definitions

        return build_definitions(self.settings)

    @property
    def approval_key(self) -> ApprovalKey:
        """The key that signs approval decisions (env AGENT_PIPELINES_APPROVAL_KEY, else a 0600 file here)."""
        return load_key(self.settings.state_dir)

    @cached_property
    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.get()

    def tick(self) -> list[SensorTick]:
        return tick(self.definitions, self.instance, self.db)

    def status(self) -> Status:
        by_wf = IntentStore(self.db).counts()
        totals: dict[str, int] = {}
        for states in by_wf.values():
            for state, n in states.items():
                totals[state] = totals.get(state, 0) + n
        with self.db.connect() as conn:
            lease = self.settings.lease_seconds
            dup = duplicate_ledger_writes(conn) + sum(wf.duplicate_writes(conn) for wf in all_workflows())
            return Status(intents=dict(sorted(totals.items())), by_workflow=by_wf, writes=count_writes(conn),
                          duplicate_writes=dup,
                          stranded=len(stranded(conn, lease)) + len(stalled_continuations(conn, lease)),
                          partial_commits=len(partial_commits(conn)))

    def intents(self, workflow: str | None = None) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from agent_pipelines.framework.tables import intents

        stmt = select(intents).order_by(intents.c.created_at, intents.c.intent_id)
        if workflow:
            stmt = stmt.where(intents.c.workflow == workflow)
        with self.db.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]
