"""Reviewer identities: who is deciding is proven by a personal token, never stated as a free string.

`add` prints a token `ap_<token_id>_<secret>` once; only a salted scrypt hash of the secret is stored,
with an HMAC seal over the row (signing.py) so that a reviewer row written in SQL is not accepted.
`authenticate` looks the token up by its id and verifies the hash; a revoked token is refused. What a
reviewer may decide is the workflow's policy pack's word (`approval.approvers` by name): the roles
stored here are descriptive only, so the pack stays the one authority over who approves."""

import hashlib
import hmac
import re
import secrets
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, select, update

from agent_pipelines.framework import audit
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.signing import ApprovalKey
from agent_pipelines.framework.tables import reviewers

TOKEN_ENV = "AGENT_PIPELINES_REVIEWER_TOKEN"
TOKEN_PREFIX = "ap"
# Plain ASCII names: no look-alikes (ALICE vs alice is two names; a zero-width space is refused).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_TOKEN = re.compile(r"ap_([0-9a-f]{16})_([A-Za-z0-9_-]{32,128})")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class ReviewerRefused(Exception):
    """Not authenticated, or the reviewer cannot be registered; nothing changed."""


class Reviewer(BaseModel, frozen=True):
    """An authenticated reviewer (returned by `authenticate`; `decide` re-checks it is still active)."""

    name: str
    roles: tuple[str, ...] = ()
    token_id: str


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ReviewerRefused("an empty identity cannot be a reviewer")
    if name.casefold().startswith("agent:"):
        raise ReviewerRefused(f"{name} is an agent identity; agents never decide approvals")
    if not _NAME.fullmatch(name):
        raise ReviewerRefused(f"{name!r} is not a valid reviewer name (letters, digits and ._@+-, at most 64)")
    return name


def _hash(secret: str, salt: bytes) -> str:
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def _matches(secret: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


def _seal(key: ApprovalKey, row: dict[str, Any]) -> str:
    return key.sign("reviewer", row["token_id"], row["name"], list(row["roles"]), row["token_hash"])


def add(db: Database, key: ApprovalKey, name: str, roles: tuple[str, ...] = ()) -> tuple[Reviewer, str]:
    """Register a reviewer; returns it and its token (shown once, never stored)."""
    name = check_name(name)
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = dict(token_id=token_id, name=name, roles=sorted({r.strip() for r in roles if r.strip()}),
               token_hash=_hash(secret, secrets.token_bytes(16)), created_at=utcnow())
    with db.begin() as conn:
        if _active(conn, name) is not None:
            raise ReviewerRefused(f"{name} already has an active token; revoke it first (reviewers revoke {name})")
        conn.execute(reviewers.insert().values(**row, seal=_seal(key, row)))
        audit.append(conn, key, audit.EventKind.REVIEWER_ADDED, None,
                     {"name": name, "token_id": token_id, "roles": row["roles"]})
    return Reviewer(name=name, roles=tuple(row["roles"]), token_id=token_id), f"{TOKEN_PREFIX}_{token_id}_{secret}"


def authenticate(db: Database, key: ApprovalKey, token: str | None) -> Reviewer:
    """The reviewer a token proves, or ReviewerRefused (the message never says which part was wrong)."""
    m = _TOKEN.fullmatch((token or "").strip())
    if m is None:
        raise ReviewerRefused("no valid reviewer token (set AGENT_PIPELINES_REVIEWER_TOKEN)")
    with db.connect() as conn:
        row = conn.execute(select(reviewers).where(reviewers.c.token_id == m.group(1))).mappings().first()
    if row is None or not _matches(m.group(2), row["token_hash"]) or not key.verify(row["seal"], "reviewer",
            row["token_id"], row["name"], list(row["roles"]), row["token_hash"]):
        raise ReviewerRefused("the reviewer token is not valid")
    if row["revoked_at"] is not None:
        raise ReviewerRefused(f"the token of {row['name']} was revoked")
    return Reviewer(name=row["name"], roles=tuple(row["roles"]), token_id=row["token_id"])


def still_active(conn: Connection, key: ApprovalKey, reviewer: Reviewer) -> bool:
    """Is this reviewer's token registered (sealed), for this name, and not revoked? Checked again at
    decision time, inside the decision's transaction, so a token revoked meanwhile decides nothing."""
    row = conn.execute(select(reviewers).where(reviewers.c.token_id == reviewer.token_id)).mappings().first()
    return (row is not None and row["name"] == reviewer.name and row["revoked_at"] is None
            and key.verify(row["seal"], "reviewer", row["token_id"], row["name"], list(row["roles"]),
                           row["token_hash"]))


def active(db: Database, key: ApprovalKey, *, token_id: str | None = None, name: str | None = None) -> Reviewer | None:
    """The reviewer of an active (sealed, not revoked) token, found by token id or by name; None otherwise.
    The console re-checks its session with this on every request, so a revoked token ends it at once."""
    stmt = select(reviewers).where(reviewers.c.revoked_at.is_(None))
    if token_id is not None:
        stmt = stmt.where(reviewers.c.token_id == token_id)
    elif name is not None:
        stmt = stmt.where(reviewers.c.name == name.strip())
    else:
        return None
    with db.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None or not key.verify(row["seal"], "reviewer", row["token_id"], row["name"], list(row["roles"]),
                                     row["token_hash"]):
        return None
    return Reviewer(name=row["name"], roles=tuple(row["roles"]), token_id=row["token_id"])


def token_id_of(token: str | None) -> str | None:
    """The id part of a well-formed token (what login rate limiting counts failures against)."""
    m = _TOKEN.fullmatch((token or "").strip())
    return m.group(1) if m else None


def revoke(db: Database, key: ApprovalKey, name: str, now: datetime | None = None) -> int:
    """Revoke every active token of `name`; returns how many."""
    now = now or utcnow()
    with db.begin() as conn:
        ids = conn.execute(select(reviewers.c.token_id).where(reviewers.c.name == name.strip(),
                                                                 reviewers.c.revoked_at.is_(None))).scalars().all()
        if ids:
            conn.execute(update(reviewers).where(reviewers.c.token_id.in_(ids)).values(revoked_at=now))
            audit.append(conn, key, audit.EventKind.REVIEWER_REVOKED, None, {"name": name.strip(), "token_ids": ids})
    return len(ids)


def listing(db: Database) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(select(reviewers.c.name, reviewers.c.roles, reviewers.c.token_id,
                                   reviewers.c.created_at, reviewers.c.revoked_at)
                            .order_by(reviewers.c.name, reviewers.c.created_at)).mappings()
        return [dict(r) for r in rows]


def _active(conn: Connection, name: str) -> str | None:
    return conn.execute(select(reviewers.c.token_id).where(reviewers.c.name == name,
                                                           reviewers.c.revoked_at.is_(None))).scalar()
