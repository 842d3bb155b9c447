"""Typed state of access offboarding: the request as submitted (intake), what the directory and HR
say (context), and the change the model proposes (proposal).

The proposal can express exactly two kinds of change, disabling the account and removing one role
grant. There is no grant, no delete and no bulk action: a model output that adds a field or names
another kind fails validation (instructor re-asks), and no tool exists that could carry it out."""

import re
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_pipelines.framework.workflow import StepModel

WORKFLOW = "access_offboarding"

USER_ID_PATTERN = r"u-[0-9]{5}"
OFFBOARDING_REF_PATTERN = r"HR-[0-9]{4}-[0-9]{4}"
_USER_IDS = re.compile(rf"\b{USER_ID_PATTERN}\b", re.I)
_REFS = re.compile(rf"\b{OFFBOARDING_REF_PATTERN}\b", re.I)

ActionKind = Literal["disable_account", "remove_role"]
ACTION_KINDS: tuple[str, ...] = ActionKind.__args__  # type: ignore[attr-defined]


def _ids(pattern: re.Pattern[str], text: str) -> list[str]:
    """Distinct matches in order of appearance, normalised (u-10042, HR-2026-0117)."""
    seen: dict[str, None] = {}
    for m in pattern.finditer(text or ""):
        v = m.group(0)
        seen[v.lower() if v[:1] in "uU" else v.upper()] = None
    return list(seen)


# -- intake: one row of access_requests, as the sensor read it -----------------------------------------
MAX_TEXT_CHARS = 100_000  # a request over this is recorded as rejected_input with the reason


class AccessRequestIntake(StepModel):
    seq: int
    request_id: str = Field(min_length=1, max_length=2048)
    version: int = 1
    requester: str = Field("", max_length=320)
    text: str = Field("", max_length=MAX_TEXT_CHARS)
    user_id: str | None = Field(None, max_length=64)  # from the form; None when the requester did not fill it in
    offboarding_ref: str | None = Field(None, max_length=64)  # from the form
    submitted_at: datetime | None = None

    @property
    def named_user_ids(self) -> list[str]:
        """Every user the request names: the form field and any user id written in the text."""
        field = [self.user_id.strip().lower()] if self.user_id and self.user_id.strip() else []
        return list(dict.fromkeys(field + _ids(_USER_IDS, self.text)))

    @property
    def named_refs(self) -> list[str]:
        field = [self.offboarding_ref.strip().upper()] if self.offboarding_ref and self.offboarding_ref.strip() else []
        return list(dict.fromkeys(field + _ids(_REFS, self.text)))

    @property
    def evidence_user_id(self) -> str | None:
        """The one user this request is about: the form field, else the only user id in the text."""
        named = self.named_user_ids
        return named[0] if len(named) == 1 or (named and self.user_id) else None

    @property
    def evidence_ref(self) -> str | None:
        named = self.named_refs
        return named[0] if len(named) == 1 or (named and self.offboarding_ref) else None


# -- context: read through read-only tools -------------------------------------------------------------
class AccountSnapshot(StepModel):
    user_id: str
    display_name: str
    email: str
    department: str
    status: str  # active | disabled
    version: int


class GrantSnapshot(StepModel):
    user_id: str
    role: str
    granted_at: datetime
    revoked_at: datetime | None = None
    revoked_by_intent: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class HrRecord(StepModel):
    reference: str
    user_id: str
    effective_date: date
    status: str  # confirmed | pending | cancelled


class AccessContext(StepModel):
    user_id: str | None  # the evidence user id READ looked up (None: the request names none)
    offboarding_ref: str | None
    account: AccountSnapshot | None  # None: no such account
    grants: tuple[GrantSnapshot, ...]  # the account's active grants
    hr_record: HrRecord | None  # None: no such HR record

    @property
    def active_roles(self) -> list[str]:
        return sorted(g.role for g in self.grants if g.active)


# -- proposal: what the model returns (instructor response_model); it decides nothing -------------------
class AccessAction(BaseModel):
    """One change to one account: disable it, or remove one role it holds."""

    model_config = ConfigDict(extra="forbid")
    kind: ActionKind = Field(description="disable_account or remove_role; nothing else exists")
    role: str | None = Field(None, max_length=48,
                             description="the role to remove (remove_role only; null for disable_account)")
    user_id: str | None = Field(None, description="the account this action changes; null means the proposal's "
                                                   "user_id")

    @model_validator(mode="after")
    def _role_matches_kind(self) -> "AccessAction":
        if self.kind == "remove_role" and not (self.role or "").strip():
            raise ValueError("remove_role needs the role to remove")
        if self.kind == "disable_account" and self.role is not None:
            raise ValueError("disable_account takes no role")
        return self


class OffboardingProposal(BaseModel):
    """The access changes that offboard one leaver, backed by their HR offboarding record."""

    model_config = ConfigDict(extra="forbid")
    user_id: str | None = Field(pattern=rf"^{USER_ID_PATTERN}$",
                                description="user_id of the leaver, e.g. u-10042; null if the records name none")
    offboarding_ref: str | None = Field(pattern=rf"^{OFFBOARDING_REF_PATTERN}$",
                                        description="the HR offboarding reference, e.g. HR-2026-0117; null if none")
    actions: list[AccessAction] = Field(max_length=32, description="the changes, at most one per kind and role")
    rationale: str = Field(max_length=2000, description="why these changes, from the records given")

    def target_users(self) -> list[str]:
        """Every account the proposal would change (the proposal's user unless an action names another)."""
        return sorted({u for u in [self.user_id, *(a.user_id for a in self.actions)] if u})
