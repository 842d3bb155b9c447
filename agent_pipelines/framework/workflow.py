"""The workflow contract. A workflow supplies typed models, its step functions and its policy; the
framework (jobs.py) turns it into a Dagster job and wraps every step with the guarantees: intent
state, exactly-once writes, policy, tracing. See workflows/invoice_matching/workflow.py."""

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Table

from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.tools import ToolRegistry
from agent_pipelines.framework.intents import Intent
from agent_pipelines.framework.ledger import WriteReceipt
from agent_pipelines.framework.policy import PolicyPack
from agent_pipelines.framework.quality import SuiteCheck, SuiteResult

IntakeT = TypeVar("IntakeT", bound=BaseModel)
ContextT = TypeVar("ContextT", bound=BaseModel)
ProposalT = TypeVar("ProposalT", bound=BaseModel)


class StepModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Violation(StepModel):
    rule: str
    message: str


class NeedInput(StepModel):
    """One targeted follow-up question; the intent parks in waiting_for_input."""

    field: str
    question: str


class Validation(StepModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    violations: tuple[Violation, ...] = ()
    need_input: NeedInput | None = None
    # The suites the planned change must pass (quality.SuiteCheck); the framework runs them, one
    # validation per batch, and fills `suites` with each intent's result.
    checks: tuple[SuiteCheck, ...] = ()
    suites: tuple[SuiteResult, ...] = ()
    facts: dict[str, Any] = {}  # what the policy pack's rules look at


class WriteAction(StepModel):
    """One write the commit step will make: `action` names it within the intent (the idempotency key
    is derived from workflow, intent and action)."""

    action: str
    tool: str
    params: dict[str, Any]


class RecordPreview(StepModel):
    """What one planned write would do to one record, shown to a reviewer before they decide. `before`
    is the record as the agent read it (the stored context), None for a record the write creates or
    when the workflow cannot tell; `after` is what the write sets; `basis` says which of these it is."""

    table: str
    key: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any]
    basis: str


class Verification(StepModel):
    """`passed` is the workflow's read-back verdict; the framework also fails it when a check fails."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    passed: bool
    problems: tuple[str, ...] = ()
    checks: tuple[SuiteCheck, ...] = ()
    suites: tuple[SuiteResult, ...] = ()
    records: dict[str, Any] = {}


@dataclass
class Step:
    """What a step function receives: the intent, the tool gateway (its only way out), and a logger."""

    intent: Intent
    tools: ToolGateway
    run_id: str | None
    log: Callable[[str], None]


class Workflow(ABC, Generic[IntakeT, ContextT, ProposalT]):
    name: ClassVar[str]
    version: ClassVar[str]
    prompt_version: ClassVar[str]
    description: ClassVar[str]
    intake_model: ClassVar[type[BaseModel]]
    context_model: ClassVar[type[BaseModel]]
    proposal_model: ClassVar[type[BaseModel]]
    policy_file: ClassVar[Path]
    # The system-of-record tables the workflow reads and writes, parents first (gold cases seed them),
    # and its gold cases (framework/gold.py), beside the policy pack.
    record_tables: ClassVar[tuple[Table, ...]] = ()
    gold_file: ClassVar[Path | None] = None
    # Records the workflow's system of record keeps in an external service (gold cases seed them through
    # `seed_external`, in this order, after the tables): e.g. ("crm.opportunities", "crm.notes").
    external_records: ClassVar[tuple[str, ...]] = ()

    @functools.cached_property
    def policy(self) -> PolicyPack:
        pack = PolicyPack.load(self.policy_file)
        if pack.workflow != self.name:
            raise ValueError(f"{self.policy_file} is the policy of {pack.workflow!r}, not {self.name!r}")
        return pack

    @abstractmethod
    def tools(self) -> ToolRegistry: ...

    @functools.cached_property
    def registry(self) -> ToolRegistry:
        """tools(), built once per workflow instance: a registry does not change once built, and the
        batch path opens a gateway per intent and step (issue 11: rebuilding it was ~0.6 ms an intent)."""
        return self.tools()

    # The steps, in the order they run.
    @abstractmethod
    def read(self, step: Step, intake: IntakeT) -> ContextT: ...

    @abstractmethod
    def messages(self, intake: IntakeT, context: ContextT) -> list[dict[str, str]]: ...

    @abstractmethod
    def propose_offline(self, intake: IntakeT, context: ContextT) -> ProposalT: ...

    @abstractmethod
    def validate(self, step: Step, intake: IntakeT, context: ContextT, proposal: ProposalT) -> Validation: ...

    @abstractmethod
    def plan_writes(self, intent_id: str, intake: IntakeT, context: ContextT,
                    proposal: ProposalT) -> list[WriteAction]: ...

    @abstractmethod
    def verify(self, step: Step, intake: IntakeT, context: ContextT, proposal: ProposalT,
               receipts: list[WriteReceipt]) -> Verification: ...

    def batch_key(self, intake: IntakeT) -> str | None:
        """What makes two intents depend on each other: intents with the same key are never in one batch
        together (the later ones run alone, in order, after it), because one reads what the other
        writes (a follow-up joins the ticket the first message opens). None: independent. Writes to the
        same record are caught anyway (a changed precondition defers the intent to a solo retry)."""
        return None

    def resume_from(self, answered_field: str) -> str:
        """The first step to redo when an answer to `answered_field` arrives: "read", "propose" or
        "validate". Earlier steps reuse their persisted output. Redo everything unless told otherwise."""
        return "read"

    def preconditions(self, context: ContextT, proposal: ProposalT) -> dict[str, Any]:
        """What must still hold when the writes start (record versions, statuses), computed from a
        context. COMMIT re-reads the context and refuses to write if this changed since READ."""
        return {}

    def rationale(self, intake: IntakeT, context: ContextT, proposal: ProposalT) -> str:
        return str(getattr(proposal, "rationale", ""))

    def preview_write(self, context: ContextT, write: WriteAction) -> RecordPreview:
        """The record-level before/after of one planned write, for the reviewer console. The default
        knows only the write's parameters; a workflow that can derive the record from its context says so."""
        return RecordPreview(table=write.tool, after=dict(write.params),
                             basis="the write's planned parameters; earlier values are not derived for this tool")

    def seed_gold_files(self, settings: Any) -> None:
        """Files (not rows) the gold cases read, written into the fresh eval state before they run (a
        workflow whose read tools read files, such as incident_triage's diagnostics). None by default."""

    def seed_external(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Put gold-case records of `name` (one of external_records) into the external service."""
        raise NotImplementedError(f"{self.name} keeps no external records")

    def duplicate_writes(self, conn: Connection) -> int:
        """Records in this workflow's system of record that exist more than once for one intent or
        business key, counted from the tables themselves (never from a stored counter)."""
        return 0
