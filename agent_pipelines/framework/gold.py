"""Gold cases: what a workflow must decide for a given input, kept in the repository as YAML beside
the workflow's policy pack (`Workflow.gold_file`) and edited by reviewers.

A gold file has the workflow's name, optional `shared` system-of-record rows (reference data every
case reads, such as teams and products: seeded once), and the cases. Each case brings its own
system-of-record rows (`records`, table -> rows, with keys no other case uses, so cases run together
in one batch without reading each other's records; a record kind the workflow keeps in an external
service, `Workflow.external_records`, is handed to its `seed_external`), the intake the workflow
receives, and what must happen (`expected`): the terminal state, the rule that decided it, and the writes.

`expected.rule` is, by state: the policy rule that decided (completed: `within_policy`;
waiting_for_approval and denied: the winning rule), the first validation rule of a rejection, or the
field of the question a waiting_for_input intent asks. `expected.writes` are the writes committed
(state completed) or awaiting approval (waiting_for_approval), in plan order; each names its action,
optionally the record it lands on (`target`, `table:key`, committed writes only) and any parameters
the plan must carry (`amount_cents: 100000`)."""

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Table

from agent_pipelines.framework.db import Database
from agent_pipelines.framework.intents import IntentStore, digest
from agent_pipelines.framework.states import IntentState
from agent_pipelines.framework.workflow import Workflow

GOLD_SOURCE = "gold"  # source_ref prefix of the intents a gold run registers


class ExpectedWrite(BaseModel):
    """One write: its action, optionally its target (`table:key`), and any planned parameters (extra keys)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    action: str
    target: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    state: IntentState
    rule: str | None = None
    writes: tuple[ExpectedWrite, ...] = ()

    @model_validator(mode="after")
    def _writes_only_when_a_change_is_made(self) -> "Expected":
        if self.writes and self.state not in (IntentState.COMPLETED, IntentState.WAITING_FOR_APPROVAL):
            raise ValueError(f"a case ending {self.state} makes no writes; expected.writes must be empty")
        return self


class GoldCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,49}$")
    description: str = ""
    tags: tuple[str, ...] = ()  # what the case covers (rule names, "happy_path", "threshold", "hostile")
    records: dict[str, list[dict[str, Any]]] = {}
    intake: dict[str, Any]
    expected: Expected


class GoldFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    workflow: str
    description: str = ""
    shared: dict[str, list[dict[str, Any]]] = {}
    cases: tuple[GoldCase, ...]

    @model_validator(mode="after")
    def _unique_names(self) -> "GoldFile":
        names = [c.name for c in self.cases]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate case names: {dupes}")
        return self


def load_gold(path: Path) -> GoldFile:
    try:
        return GoldFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid gold file: {exc}") from exc


def gold_of(wf: Workflow) -> GoldFile:
    if wf.gold_file is None:
        raise ValueError(f"workflow {wf.name} has no gold file")
    gold = load_gold(wf.gold_file)
    if gold.workflow != wf.name:
        raise ValueError(f"{wf.gold_file} holds the gold cases of {gold.workflow!r}, not {wf.name!r}")
    return gold


def gold_intent_id(wf: Workflow, case: GoldCase) -> str:
    return f"{wf.name}:gold:{case.name}"


def load_cases(db: Database, wf: Workflow, gold: GoldFile) -> dict[str, str]:
    """Seed the shared rows and every case's rows into the system of record, and register one intent per
    case as its trigger would (state received, the intake as received). Returns case name -> intent id.
    A case that names a table outside the workflow's system of record, or a row whose key another case
    already used, fails here: cases must not see each other."""
    tables = {t.name: t for t in wf.record_tables}

    def table(name: str, case: str) -> Table | None:
        if name in wf.external_records:
            return None
        if name not in tables:
            raise ValueError(f"{case}: {name!r} is not one of {wf.name}'s system-of-record tables {sorted(tables)}")
        return tables[name]

    for c in gold.cases:
        for name in c.records:
            table(name, c.name)
    with db.begin() as conn:
        for name, rows in gold.shared.items():
            if rows and (t := table(name, "shared")) is not None:
                conn.execute(t.insert(), rows)
        # Insert table by table in the order the workflow lists them (parents before children).
        for t in wf.record_tables:
            rows = [r for c in gold.cases for r in c.records.get(t.name, [])]
            if rows:
                conn.execute(t.insert(), rows)
    for name in wf.external_records:  # an external service's records, after our own
        rows = gold.shared.get(name, []) + [r for c in gold.cases for r in c.records.get(name, [])]
        if rows:
            wf.seed_external(name, json.loads(json.dumps(rows, default=str)))  # dates as the API's strings
    store, ids = IntentStore(db), {}
    for c in gold.cases:
        intake = wf.intake_model.model_validate(c.intake)  # a malformed intake is the gold file's error
        data = json.loads(intake.model_dump_json())
        intent, created = store.register(
            intent_id=gold_intent_id(wf, c), workflow=wf.name, correlation_id=f"gold:{c.name}",
            source_ref=f"{GOLD_SOURCE}:{wf.name}:{c.name}", source_digest=digest(json.dumps(data, sort_keys=True)),
            intake=data)
        if not created:
            raise ValueError(f"{c.name}: intent {intent.intent_id} already exists; gold cases need a fresh state")
        ids[c.name] = intent.intent_id
    return ids
