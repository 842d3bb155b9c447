"""The write tools for the local services, as `ExternalWrite` declarations (framework/external.py):
what the refund and CRM-hygiene workflows register, and what the tests drive through the gateway.

- `refund_tool`: POST /refunds with an Idempotency-Key header; the payments API honours it, so its
  read-back asks for the refund by that key.
- `crm_update_tool`: PATCH /opportunities/{id} with If-Match; the CRM ignores idempotency keys, so the
  read-back looks in the record's own history for this change from the version we based it on.
- `crm_task_tool`: POST a task on an opportunity; every request creates one, so the read-back looks
  for the business key (`ref`) the tool puts on it."""

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection

from agent_pipelines.framework.external import (
    ExternalWrite,
    HttpCall,
    ReadBack,
    ReadBy,
    external_tool,
)
from agent_pipelines.framework.tools import Tool
from agent_pipelines.framework.ledger import PreconditionFailed, WriteOutcome
from agent_pipelines.services.crm import etag


class RefundParams(BaseModel):
    order_id: str = Field(min_length=1, max_length=64)
    amount_cents: int = Field(gt=0)
    reason: str = Field(min_length=1, max_length=64)
    reference: str = Field(default="", max_length=200)


class OpportunityUpdate(BaseModel):
    opportunity_id: str = Field(min_length=1, max_length=64)
    base_version: int = Field(ge=1)  # the version the proposal was made from (sent as If-Match)
    stage: str | None = Field(default=None, max_length=64)
    next_step: str | None = Field(default=None, max_length=500)

    def fields(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"opportunity_id", "base_version"})


class OpportunityTask(BaseModel):
    opportunity_id: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=4000)
    ref: str = Field(min_length=1, max_length=200)  # the business key: one task per ref


def _first(answer: Any) -> dict[str, Any] | None:
    data = answer.get("data") or []
    return data[0] if data else None


def _refund_outcome(p: RefundParams, refund: dict[str, Any]) -> WriteOutcome:
    return WriteOutcome(table="payments.refunds", key=refund["id"], before=None,
                        after={f: refund.get(f) for f in ("order_id", "amount_cents", "reason", "status")})


def _refund_dry_run(conn: Connection, p: RefundParams) -> WriteOutcome:
    return WriteOutcome(table="payments.refunds", key=f"(would refund {p.order_id})", before=None,
                        after={**p.model_dump(exclude={"reference"}), "status": "would_refund"})


def refund_tool(name: str = "create_refund", *, attempts: int = 5, timeout_s: float = 10.0,
                dry_run: bool = True) -> Tool:
    spec = ExternalWrite(
        service="payments", honours_key=True, attempts=attempts, timeout_s=timeout_s,
        call=lambda p: HttpCall(method="POST", path="/refunds", json_body=p.model_dump()),
        read_back=ReadBack(ReadBy.IDEMPOTENCY_KEY,
                           request=lambda p, key: HttpCall(method="GET", path="/refunds",
                                                           params={"idempotency_key": key}),
                           match=lambda p, key, answer: _first(answer)),
        outcome=_refund_outcome, dry_run=_refund_dry_run if dry_run else None)
    return external_tool(name, RefundParams, spec, description="Refund a captured order through the payments API")


def _update_match(p: OpportunityUpdate, key: str, answer: Any) -> dict[str, Any] | None:
    """Our change is the update made from `base_version` with our values; another update from that
    version means someone else changed the record first (If-Match would have refused ours)."""
    for a in answer.get("data") or []:
        if a["kind"] != "update" or a["from_version"] != p.base_version:
            continue
        if {f: v[1] for f, v in a["changes"].items()} != p.fields():
            raise PreconditionFailed(f"opportunity {p.opportunity_id} changed from version {p.base_version} "
                                     f"by another update: {a['changes']}")
        return {"id": p.opportunity_id, "version": a["to_version"], **p.fields()}
    return None


def _update_outcome(p: OpportunityUpdate, opp: dict[str, Any]) -> WriteOutcome:
    return WriteOutcome(table="crm.opportunities", key=p.opportunity_id, before={"version": p.base_version},
                        after={"version": opp["version"], **{f: opp.get(f) for f in p.fields()}})


def _update_dry_run(conn: Connection, p: OpportunityUpdate) -> WriteOutcome:
    return WriteOutcome(table="crm.opportunities", key=p.opportunity_id, before={"version": p.base_version},
                        after={**p.fields(), "status": "would_update"})


def crm_update_tool(name: str = "update_opportunity", *, attempts: int = 5, timeout_s: float = 10.0,
                    settle_s: float = 0.0, params: type[OpportunityUpdate] = OpportunityUpdate, dry_run: bool = True,
                    description: str = "Update an opportunity's stage or next step") -> Tool:
    """`params`: the fields the tool may carry (a subclass adds owner or amount for a tool a pack gates)."""
    spec = ExternalWrite(
        service="crm", honours_key=False, attempts=attempts, timeout_s=timeout_s, settle_s=settle_s,
        call=lambda p: HttpCall(method="PATCH", path=f"/opportunities/{p.opportunity_id}", json_body=p.fields(),
                                headers={"If-Match": etag(p.base_version)}),
        read_back=ReadBack(ReadBy.BUSINESS_KEY,
                           request=lambda p, key: HttpCall(method="GET",
                                                           path=f"/opportunities/{p.opportunity_id}/activities"),
                           match=_update_match),
        outcome=_update_outcome, dry_run=_update_dry_run if dry_run else None)
    return external_tool(name, params, spec, description=description)


def _task_outcome(p: OpportunityTask, activity: dict[str, Any]) -> WriteOutcome:
    return WriteOutcome(table="crm.activities", key=activity["id"], before=None,
                        after={"opportunity_id": p.opportunity_id, "subject": p.subject, "ref": p.ref})


def crm_task_tool(name: str = "create_task", *, attempts: int = 5, timeout_s: float = 10.0,
                  settle_s: float = 0.0) -> Tool:
    spec = ExternalWrite(
        service="crm", honours_key=False, attempts=attempts, timeout_s=timeout_s, settle_s=settle_s,
        call=lambda p: HttpCall(method="POST", path=f"/opportunities/{p.opportunity_id}/activities",
                                json_body={"kind": "task", "subject": p.subject, "body": p.body, "ref": p.ref}),
        read_back=ReadBack(ReadBy.BUSINESS_KEY,
                           request=lambda p, key: HttpCall(method="GET",
                                                           path=f"/opportunities/{p.opportunity_id}/activities",
                                                           params={"ref": p.ref}),
                           match=lambda p, key, answer: _first(answer)),
        outcome=_task_outcome)
    return external_tool(name, OpportunityTask, spec, description="Create a task for the opportunity's owner")
