"""Typed tools over the identity directory. The workflow reaches these tables only through the
gateway; write tools run inside the ledger's transaction and report before/after.

There are exactly two write tools, both high impact: disable one account, remove one role grant of
one account. There is deliberately no tool that grants a role, deletes an account or a grant, or
acts on more than one account: whatever a request asks for, the most this workflow can do is take
access away from the one person whose HR offboarding record backs the request. Neither tool ever
DELETEs a row."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, bindparam, select, update

from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.tools import Impact, PermanentToolError, Tool, ToolKind, ToolRegistry
from agent_pipelines.framework.ledger import PreconditionFailed, WriteOutcome
from agent_pipelines.framework.sql import for_update
from agent_pipelines.workflows.access_offboarding.models import (
    OFFBOARDING_REF_PATTERN,
    USER_ID_PATTERN,
    AccountSnapshot,
    GrantSnapshot,
    HrRecord,
)
from resources.access import directory_accounts, hr_offboarding, role_grants

UserId = Annotated[str, Field(pattern=rf"^{USER_ID_PATTERN}$")]
Ref = Annotated[str, Field(pattern=rf"^{OFFBOARDING_REF_PATTERN}$")]


# Each statement is built once, here, and run with its values as parameters: building and hashing a new
# statement tree per call cost more than running it (framework/sql.py says why).
_A, _G = directory_accounts.c, role_grants.c
_ACCOUNT = select(directory_accounts).where(_A.user_id == bindparam("p_user"))
_GRANTS = select(role_grants).where(_G.user_id == bindparam("p_user")).order_by(_G.role)
_ACTIVE_GRANTS = _GRANTS.where(_G.revoked_at.is_(None))
_HR = select(hr_offboarding).where(hr_offboarding.c.reference == bindparam("p_ref"))
_DISABLE = (update(directory_accounts).where(_A.user_id == bindparam("p_user"), _A.version == bindparam("p_version"))
            .values(status="disabled", version=bindparam("p_next"), disabled_by_intent=bindparam("p_intent"),
                    disabled_at=bindparam("p_at")))
_GRANT = select(role_grants).where(_G.user_id == bindparam("p_user"), _G.role == bindparam("p_role"))
_REVOKE = (update(role_grants).where(_G.id == bindparam("p_id"), _G.revoked_at.is_(None))
           .values(revoked_at=bindparam("p_at"), revoked_by_intent=bindparam("p_intent")))


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if isinstance(t, datetime) else t


# -- read tools ----------------------------------------------------------------------------------------
class GetAccount(BaseModel):
    user_id: UserId


def get_account(conn: Connection, p: GetAccount) -> AccountSnapshot | None:
    row = conn.execute(_ACCOUNT, {"p_user": p.user_id}).mappings().first()
    return None if row is None else AccountSnapshot.model_validate({k: row[k] for k in AccountSnapshot.model_fields})


class ListGrants(BaseModel):
    user_id: UserId
    include_revoked: bool = Field(False, description="also the revoked grants (VERIFY reads them back)")


def list_grants(conn: Connection, p: ListGrants) -> list[GrantSnapshot]:
    stmt = _GRANTS if p.include_revoked else _ACTIVE_GRANTS
    return [GrantSnapshot.model_validate({k: r[k] for k in GrantSnapshot.model_fields})
            for r in conn.execute(stmt, {"p_user": p.user_id}).mappings()]


class GetHrOffboarding(BaseModel):
    reference: Ref


def get_hr_offboarding(conn: Connection, p: GetHrOffboarding) -> HrRecord | None:
    row = conn.execute(_HR, {"p_ref": p.reference}).mappings().first()
    return None if row is None else HrRecord.model_validate(dict(row))


# -- write tools ---------------------------------------------------------------------------------------
class DisableAccount(BaseModel):
    user_id: UserId
    intent_id: str = Field(min_length=1)
    offboarding_ref: Ref
    expected_version: int = Field(ge=1, description="the account version READ saw: a change since then refuses")


def disable_account(conn: Connection, p: DisableAccount) -> WriteOutcome:
    """status active -> disabled, version + 1, and who disabled it. The row stays."""
    row = conn.execute(for_update(conn, _ACCOUNT), {"p_user": p.user_id}).mappings().first()
    if row is None:
        raise PermanentToolError(f"account {p.user_id} does not exist")
    if row["version"] != p.expected_version:
        raise PreconditionFailed(f"account {p.user_id} is at version {row['version']}, not {p.expected_version} "
                                 f"as read: it changed underneath")
    if row["status"] != "active":
        raise PreconditionFailed(f"account {p.user_id} is {row['status']}, not active")
    now = utcnow()
    conn.execute(_DISABLE, {"p_user": p.user_id, "p_version": p.expected_version, "p_next": row["version"] + 1,
                            "p_intent": p.intent_id, "p_at": now})
    return WriteOutcome(
        table="directory_accounts", key=p.user_id,
        before={"status": row["status"], "version": row["version"]},
        after={"status": "disabled", "version": row["version"] + 1, "disabled_by_intent": p.intent_id,
               "offboarding_ref": p.offboarding_ref, "disabled_at": now.isoformat()})


class RemoveRole(BaseModel):
    user_id: UserId
    role: str = Field(min_length=1, max_length=48)
    intent_id: str = Field(min_length=1)
    offboarding_ref: Ref


def remove_role(conn: Connection, p: RemoveRole) -> WriteOutcome:
    """Revoke one active grant: revoked_at and revoked_by_intent are set. The row stays."""
    row = conn.execute(for_update(conn, _GRANT), {"p_user": p.user_id, "p_role": p.role}).mappings().first()
    if row is None:
        raise PermanentToolError(f"{p.user_id} has never held {p.role!r}")
    if row["revoked_at"] is not None:
        raise PreconditionFailed(f"{p.user_id}'s {p.role!r} grant was already revoked at {_iso(row['revoked_at'])} "
                                 f"by {row['revoked_by_intent'] or 'someone else'}")
    now = utcnow()
    conn.execute(_REVOKE, {"p_id": row["id"], "p_at": now, "p_intent": p.intent_id})
    before: dict[str, Any] = {"role": p.role, "granted_at": _iso(row["granted_at"]), "revoked_at": None}
    return WriteOutcome(
        table="role_grants", key=f"{p.user_id}/{p.role}", before=before,
        after=before | {"revoked_at": now.isoformat(), "revoked_by_intent": p.intent_id,
                        "offboarding_ref": p.offboarding_ref})


def registry() -> ToolRegistry:
    R, W, LOW, HIGH = ToolKind.READ, ToolKind.WRITE, Impact.LOW, Impact.HIGH
    # Every tool here is statements on the connection it is given: local (framework/deadline.py).
    return ToolRegistry(local=True, tools=[
        Tool("get_account", GetAccount, R, LOW, get_account),
        Tool("list_grants", ListGrants, R, LOW, list_grants),
        Tool("get_hr_offboarding", GetHrOffboarding, R, LOW, get_hr_offboarding),
        Tool("disable_account", DisableAccount, W, HIGH, disable_account),
        Tool("remove_role", RemoveRole, W, HIGH, remove_role),
    ])
