"""The identity directory's system of record (same database as the framework's tables).

Access offboarding: `directory_accounts`, `role_grants` and `hr_offboarding` are read; an upstream
form or chat gateway writes `access_requests`, which the sensor follows by `seq`; the workflow
changes `directory_accounts` (status, version) and `role_grants` (revoked_at, revoked_by_intent).
Nothing is ever deleted: a removed role keeps its row with the time and the intent that revoked it,
and a disabled account keeps its row with the intent that disabled it, so the audit trail is the
table itself."""

from sqlalchemy import Column, Date, ForeignKey, Integer, String, Table, Text, UniqueConstraint

from agent_pipelines.framework.tables import Id, Ts, metadata

directory_accounts = Table(
    "directory_accounts",
    metadata,
    Column("user_id", String(16), primary_key=True),  # u-10042
    Column("display_name", String(200), nullable=False),
    Column("email", String(254), nullable=False, unique=True),
    Column("department", String(64), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # active | disabled
    Column("version", Integer, nullable=False, server_default="1"),  # bumped by every change
    Column("disabled_by_intent", String(80)),  # null unless the workflow disabled it
    Column("disabled_at", Ts),
)

# One row per (user, role), ever: a grant is active while revoked_at is NULL. Revoking sets
# revoked_at and revoked_by_intent; the row stays.
role_grants = Table(
    "role_grants",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", String(16), ForeignKey("directory_accounts.user_id"), nullable=False, index=True),
    Column("role", String(64), nullable=False),
    Column("granted_at", Ts, nullable=False),
    Column("revoked_at", Ts),
    Column("revoked_by_intent", String(80)),
    UniqueConstraint("user_id", "role"),
)

# Written by the HR system: the authority that a person leaves (or not). The workflow only reads it.
hr_offboarding = Table(
    "hr_offboarding",
    metadata,
    Column("reference", String(32), primary_key=True),  # HR-2026-0117
    Column("user_id", String(16), nullable=False, index=True),
    Column("effective_date", Date, nullable=False),
    Column("status", String(16), nullable=False),  # confirmed | pending | cancelled
)

# Written by the upstream form / chat gateway, never by a workflow. A corrected request is
# re-inserted with version + 1 (a new seq), so the sensor sees it and it becomes a new intent.
access_requests = Table(
    "access_requests",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),  # the sensor's cursor
    Column("request_id", String(64), nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("requester", String(254), nullable=False, server_default=""),
    Column("text", Text, nullable=False, server_default=""),
    Column("user_id", String(16)),  # set when the form asked for it
    Column("offboarding_ref", String(32)),  # set when the form asked for it
    Column("submitted_at", Ts, nullable=False),
    UniqueConstraint("request_id", "version"),  # one row per version of a request
)
