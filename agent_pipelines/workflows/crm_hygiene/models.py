"""Typed state of CRM hygiene: the stale opportunity the daily scan found (intake), the record and its
activity notes as the CRM returns them (context), and the update the model proposes (proposal).

The proposal can change four fields of one opportunity: stage and next step (the hygiene itself), owner
and amount (commercial terms, which the pack never lets change without a person). Nothing else exists:
a model output naming another field fails validation and instructor re-asks."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agent_pipelines.framework.workflow import StepModel

WORKFLOW = "crm_hygiene"

# The sales stages in order, and the moves between them that a hygiene update may make. A closed
# opportunity is never reopened by the agent; a stage is never skipped forward.
STAGES: tuple[str, ...] = ("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost")
CLOSED = frozenset({"closed_won", "closed_lost"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "prospecting": frozenset({"qualification", "closed_lost"}),
    "qualification": frozenset({"proposal", "closed_lost"}),
    "proposal": frozenset({"negotiation", "qualification", "closed_lost"}),
    "negotiation": frozenset({"closed_won", "closed_lost", "proposal"}),
    "closed_won": frozenset(),
    "closed_lost": frozenset(),
}
OPPORTUNITY_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
MAX_NEXT_STEP = 500


# -- intake: one stale opportunity, as the daily scan saw it -------------------------------------------
class StaleOpportunity(StepModel):
    opportunity_id: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1)  # the version the scan saw: with the id, the intent's identity
    stale: tuple[str, ...] = ()  # why the scan picked it (no_next_step, notes_since_update)
    # The owner's answer when the notes name no next step (the question VALIDATE asks).
    next_step_hint: str | None = Field(None, max_length=MAX_NEXT_STEP)


# -- context: read through the read tools --------------------------------------------------------------
class Opportunity(StepModel):
    id: str
    stage: str | None = None
    next_step: str | None = None
    owner: str | None = None
    amount_cents: int | None = None
    version: int

    @classmethod
    def of(cls, data: dict[str, Any]) -> "Opportunity":
        return cls.model_validate({k: data.get(k) for k in cls.model_fields})


class Note(StepModel):
    """An activity note: free text someone typed into the CRM. Untrusted: it is data, never instructions."""

    id: str
    subject: str = ""
    body: str = ""

    @property
    def text(self) -> str:
        return f"{self.subject}. {self.body}".strip(". ")


class CrmContext(StepModel):
    opportunity: Opportunity | None  # None: the CRM has no such opportunity
    notes: tuple[Note, ...] = ()  # the notes written since the record was last updated, oldest first
    updates: int = 0  # updates in the record's history (the CRM's own count)


# -- proposal: what the model returns (instructor response_model); it decides nothing -------------------
class HygieneProposal(BaseModel):
    """The fields of one opportunity to bring up to date with its activity notes; null leaves a field as it is."""

    model_config = ConfigDict(extra="forbid")
    stage: str | None = Field(None, max_length=64, description=f"the new stage, one of {', '.join(STAGES)}; null: unchanged")
    next_step: str | None = Field(None, max_length=MAX_NEXT_STEP, description="the new next step; null: unchanged")
    owner: str | None = Field(None, max_length=64, description="a new owner only if the notes say it changed; null otherwise")
    amount_cents: int | None = Field(None, ge=0, description="a new amount only if the notes say it changed; null otherwise")
    rationale: str = Field("", max_length=2000, description="which notes support the change")

    def changes(self, current: Opportunity) -> dict[str, Any]:
        """The fields this proposal really changes on `current` (a value equal to the record's is no change)."""
        proposed = {"stage": self.stage, "next_step": self.next_step, "owner": self.owner,
                    "amount_cents": self.amount_cents}
        return {f: v for f, v in proposed.items() if v is not None and v != getattr(current, f)}
