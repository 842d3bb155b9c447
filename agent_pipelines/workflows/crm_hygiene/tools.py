"""Typed tools over the CRM API (agent_pipelines/services/crm.py, or the real one at
AGENT_PIPELINES_CRM_URL). Reads go through `read_json`; the two write tools are external writes
(framework/external.py) that PATCH one opportunity with If-Match on the version READ saw.

- update_opportunity: stage and next step only, the hygiene itself.
- update_opportunity_terms: the same PATCH that may also carry owner and amount; the pack requires a
  human approver for every use of it, so commercial terms never change on the agent's word alone.
There is no tool that deletes, creates or reassigns in bulk, and none that writes a note."""

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection

from agent_pipelines.framework.external import read_json
from agent_pipelines.framework.tools import Impact, Tool, ToolKind, ToolRegistry
from agent_pipelines.services.clients import OpportunityUpdate, crm_update_tool
from agent_pipelines.workflows.crm_hygiene.models import (
    CLOSED,
    OPPORTUNITY_ID_PATTERN,
    Note,
    Opportunity,
    StaleOpportunity,
)

SERVICE = "crm"


class OpportunityRef(BaseModel):
    opportunity_id: str = Field(pattern=rf"^{OPPORTUNITY_ID_PATTERN}$")


class Activity(BaseModel, frozen=True):
    """One entry of an opportunity's history: a note or task someone wrote, or an applied update."""

    id: str
    kind: str
    subject: str = ""
    body: str = ""
    changes: dict[str, list[Any]] | None = None
    from_version: int | None = None
    to_version: int | None = None


class History(BaseModel, frozen=True):
    activities: tuple[Activity, ...] = ()

    @property
    def updates(self) -> list[Activity]:
        return [a for a in self.activities if a.kind == "update"]

    def notes_since_update(self) -> tuple[Note, ...]:
        """The notes after the record's last update: what the stage and next step do not reflect yet."""
        last = max((i for i, a in enumerate(self.activities) if a.kind == "update"), default=-1)
        return tuple(Note(id=a.id, subject=a.subject, body=a.body) for a in self.activities[last + 1:]
                     if a.kind == "note")


# -- read tools ----------------------------------------------------------------------------------------
def get_opportunity(conn: Connection, p: OpportunityRef) -> Opportunity | None:
    data = read_json(SERVICE, f"/opportunities/{p.opportunity_id}")
    return None if data is None else Opportunity.of(data)


def list_activities(conn: Connection, p: OpportunityRef) -> History:
    data = read_json(SERVICE, f"/opportunities/{p.opportunity_id}/activities") or {}
    return History(activities=tuple(Activity.model_validate({k: a.get(k) for k in Activity.model_fields if k in a})
                                    for a in data.get("data") or []))


# -- write tools ---------------------------------------------------------------------------------------
class OpportunityTermsUpdate(OpportunityUpdate):
    """An update that may also change the owner or the amount (approval required by the pack)."""

    owner: str | None = Field(default=None, max_length=64)
    amount_cents: int | None = Field(default=None, ge=0)


def registry(timeout_s: float = 10.0) -> ToolRegistry:
    """`timeout_s`: how long a PATCH waits for the CRM's answer before the read-back decides it."""
    R, LOW = ToolKind.READ, Impact.LOW
    return ToolRegistry([
        Tool("get_opportunity", OpportunityRef, R, LOW, get_opportunity, description="One opportunity with its version"),
        # Notes are typed by whoever uses the CRM: never a trusted source of a value the agent writes.
        Tool("list_activities", OpportunityRef, R, LOW, list_activities, untrusted_output=True,
             description="An opportunity's notes, tasks and update history"),
        crm_update_tool("update_opportunity", timeout_s=timeout_s),
        crm_update_tool("update_opportunity_terms", params=OpportunityTermsUpdate, timeout_s=timeout_s,
                        description="Update an opportunity including its owner or amount (approved by a person)"),
    ])


# -- the daily scan ------------------------------------------------------------------------------------
def stale_reasons(opp: dict[str, Any], history: History) -> tuple[str, ...]:
    """Why an open opportunity needs hygiene: no next step at all, or notes written since its stage and
    next step were last updated. A closed opportunity is never stale."""
    if opp.get("stage") in CLOSED:
        return ()
    reasons = []
    if not (opp.get("next_step") or "").strip():
        reasons.append("no_next_step")
    if history.notes_since_update():
        reasons.append("notes_since_update")
    return tuple(reasons)


def scan_stale() -> list[StaleOpportunity]:
    """Every stale opportunity in the CRM, at the version seen now (the daily schedule's one scan)."""
    found = []
    for opp in (read_json(SERVICE, "/opportunities") or {}).get("data") or []:
        try:
            ref = OpportunityRef(opportunity_id=str(opp.get("id")))
        except ValueError:  # an id this workflow cannot address (a path separator, 2 KB): not ours to fix
            continue
        history = list_activities(None, ref)  # type: ignore[arg-type]
        reasons = stale_reasons(opp, history)
        if reasons:
            found.append(StaleOpportunity(opportunity_id=opp["id"], version=opp["version"], stale=reasons))
    return found
