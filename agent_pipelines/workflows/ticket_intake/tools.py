"""Typed tools over the support desk's system of record. The workflow reaches these tables only through
the gateway; write tools run inside the ledger's transaction and report before/after.

There is deliberately no tool that closes, re-assigns, re-prioritises or e-mails anything: whatever a
message asks for, the most this workflow can do is file that one message."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Connection, Integer, bindparam, cast, func, select, text, update

from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.tools import Impact, PermanentToolError, Tool, ToolKind, ToolRegistry
from agent_pipelines.framework.ledger import PreconditionFailed, WriteOutcome
from agent_pipelines.framework.sql import for_update
from agent_pipelines.workflows.ticket_intake.models import (
    CATEGORIES,
    PRIORITIES,
    Attachment,
    ProductSnapshot,
    RequesterSnapshot,
    TeamSnapshot,
    TicketMessageRecord,
    TicketRecord,
    TicketSnapshot,
)
from resources.tickets import products, requesters, teams, ticket_messages, tickets

FIRST_TICKET_NO = 1001
_TICKET_NO_LOCK = 72_741_001  # PostgreSQL advisory lock key that serialises ticket-number allocation


# Each statement is built once, here, and run with its values as parameters: building and hashing a new
# statement tree per call cost more than running it (framework/sql.py says why).
_REQUESTER = select(requesters).where(requesters.c.email == bindparam("p_email"))
_OPEN_TICKETS = (select(tickets).where(tickets.c.requester_id == bindparam("p_requester"), tickets.c.status == "open")
                 .order_by(tickets.c.ticket_id))
_PRODUCTS = select(products).order_by(products.c.product_id)
_TEAMS = select(teams).order_by(teams.c.team_id)
_TICKET = select(tickets).where(tickets.c.ticket_id == bindparam("p_ticket"))
_MESSAGES = (select(ticket_messages).where(ticket_messages.c.ticket_id == bindparam("p_ticket"))
             .order_by(ticket_messages.c.id))
_MESSAGE_COUNT = (select(func.count()).select_from(ticket_messages)
                  .where(ticket_messages.c.ticket_id == bindparam("p_ticket")))
_FILED = (select(ticket_messages.c.ticket_id, ticket_messages.c.intent_id)
          .where(ticket_messages.c.message_id == bindparam("p_message")))
_TOP_TICKET_NO = select(func.max(cast(func.substr(tickets.c.ticket_id, 3), Integer)))
_TICKET_NO_LOCKED = text("SELECT pg_advisory_xact_lock(:k)")
_NEW_TICKET, _NEW_MESSAGE = tickets.insert(), ticket_messages.insert()
_TOUCH_TICKET = (update(tickets).where(tickets.c.ticket_id == bindparam("p_ticket"))
                 .values(updated_at=bindparam("p_at"), flags=bindparam("p_flags", type_=tickets.c.flags.type)))


def _ticket(row: Any) -> TicketSnapshot:
    return TicketSnapshot.model_validate({k: row[k] for k in TicketSnapshot.model_fields})


# -- read tools ----------------------------------------------------------------------------------------
class FindRequester(BaseModel):
    email: str = Field(min_length=3, max_length=254, description="the sender's e-mail address")


def find_requester(conn: Connection, p: FindRequester) -> RequesterSnapshot | None:
    row = conn.execute(_REQUESTER, {"p_email": p.email.strip().lower()}).mappings().first()
    return None if row is None else RequesterSnapshot.model_validate(dict(row))


class ListOpenTickets(BaseModel):
    requester_id: str = Field(min_length=1, max_length=32)


def list_open_tickets(conn: Connection, p: ListOpenTickets) -> list[TicketSnapshot]:
    rows = conn.execute(_OPEN_TICKETS, {"p_requester": p.requester_id}).mappings()
    return [_ticket(r) for r in rows]


class ListProducts(BaseModel):
    pass


def list_products(conn: Connection, p: ListProducts) -> list[ProductSnapshot]:
    rows = conn.execute(_PRODUCTS).mappings()
    return [ProductSnapshot.model_validate(dict(r)) for r in rows]


class ListTeams(BaseModel):
    pass


def list_teams(conn: Connection, p: ListTeams) -> list[TeamSnapshot]:
    rows = conn.execute(_TEAMS).mappings()
    return [TeamSnapshot.model_validate(dict(r)) for r in rows]


class GetTicket(BaseModel):
    ticket_id: str = Field(pattern=r"^T-\d+$")


def get_ticket(conn: Connection, p: GetTicket) -> TicketRecord | None:
    """A ticket and every message filed on it, read back for VERIFY."""
    row = conn.execute(_TICKET, {"p_ticket": p.ticket_id}).mappings().first()
    if row is None:
        return None
    msgs = conn.execute(_MESSAGES, {"p_ticket": p.ticket_id}).mappings()
    return TicketRecord(
        ticket=_ticket(row), summary=row["summary"], flags=row["flags"] or {},
        created_by_intent=row["created_by_intent"],
        messages=tuple(TicketMessageRecord(message_id=m["message_id"], intent_id=m["intent_id"], body=m["body"],
                                           attachments=tuple(m["attachments"] or ())) for m in msgs))


# -- write tools ---------------------------------------------------------------------------------------
class CreateTicket(BaseModel):
    intent_id: str
    message_id: str
    requester_id: str
    product_id: str
    subject: str = Field(min_length=1, max_length=500)
    category: str
    priority: str
    team_id: str
    summary: str = Field(min_length=1, max_length=500)
    body: str
    attachments: list[Attachment] = []
    flags: dict[str, list[str]] = {}


def _next_ticket_id(conn: Connection) -> str:
    """The next T-number. Two runs creating at once must not pick the same one: PostgreSQL serialises
    on an advisory lock held until commit; SQLite already holds the database write lock."""
    if conn.dialect.name == "postgresql":
        conn.execute(_TICKET_NO_LOCKED, {"k": _TICKET_NO_LOCK})
    top = conn.execute(_TOP_TICKET_NO).scalar()
    return f"T-{max(int(top or 0) + 1, FIRST_TICKET_NO)}"


def _already_filed(conn: Connection, message_id: str) -> None:
    # A message (even a new version of it, which is another intent) is filed once; a second filing is
    # a person's call, not a second row.
    row = conn.execute(_FILED, {"p_message": message_id}).first()
    if row is not None:
        raise PreconditionFailed(f"message {message_id} is already filed on {row.ticket_id} (intent {row.intent_id})")


def create_ticket(conn: Connection, p: CreateTicket) -> WriteOutcome:
    """A new ticket assigned to its team, with the message as its first entry, in one transaction."""
    if p.category not in CATEGORIES or p.priority not in PRIORITIES:
        raise PermanentToolError(f"unknown category {p.category!r} or priority {p.priority!r}")
    _already_filed(conn, p.message_id)
    ticket_id, now = _next_ticket_id(conn), utcnow()
    row = dict(ticket_id=ticket_id, requester_id=p.requester_id, product_id=p.product_id, subject=p.subject,
               category=p.category, priority=p.priority, team_id=p.team_id, status="open", summary=p.summary,
               flags=p.flags, created_by_intent=p.intent_id, created_at=now, updated_at=now)
    conn.execute(_NEW_TICKET, row)
    conn.execute(_NEW_MESSAGE, dict(
        ticket_id=ticket_id, message_id=p.message_id, intent_id=p.intent_id, body=p.body,
        attachments=[a.model_dump() for a in p.attachments], added_at=now))
    after = {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}
    return WriteOutcome(table="tickets", key=ticket_id, before=None,
                        after=after | {"message_id": p.message_id, "attachments": len(p.attachments)})


class AppendToTicket(BaseModel):
    ticket_id: str = Field(pattern=r"^T-\d+$")
    requester_id: str = Field(description="the requester read in READ: the ticket must still be theirs")
    intent_id: str
    message_id: str
    body: str
    attachments: list[Attachment] = []
    flags: dict[str, list[str]] = {}


def _iso(t: datetime | str | None) -> str | None:
    return t.isoformat() if isinstance(t, datetime) else t


def append_to_ticket(conn: Connection, p: AppendToTicket) -> WriteOutcome:
    """The message as a new entry on an open ticket of the same requester. Only updated_at and the
    human-facing flags of that ticket change; its team, priority and status never do."""
    row = conn.execute(for_update(conn, _TICKET), {"p_ticket": p.ticket_id}).mappings().first()
    if row is None:
        raise PermanentToolError(f"ticket {p.ticket_id} does not exist")
    if row["status"] != "open" or row["requester_id"] != p.requester_id:
        raise PreconditionFailed(f"ticket {p.ticket_id} is {row['status']} and belongs to {row['requester_id']}; "
                                 f"expected an open ticket of {p.requester_id}")
    _already_filed(conn, p.message_id)
    now = utcnow()
    flags = dict(row["flags"] or {})
    for k, v in p.flags.items():
        flags[k] = sorted(set(flags.get(k, [])) | set(v))
    count = conn.execute(_MESSAGE_COUNT, {"p_ticket": p.ticket_id}).scalar_one()
    conn.execute(_NEW_MESSAGE, dict(
        ticket_id=p.ticket_id, message_id=p.message_id, intent_id=p.intent_id, body=p.body,
        attachments=[a.model_dump() for a in p.attachments], added_at=now))
    conn.execute(_TOUCH_TICKET, {"p_ticket": p.ticket_id, "p_at": now, "p_flags": flags})
    return WriteOutcome(
        table="ticket_messages", key=p.message_id,
        before={"ticket_id": p.ticket_id, "messages": count, "flags": row["flags"] or {},
                "updated_at": _iso(row["updated_at"])},
        after={"ticket_id": p.ticket_id, "messages": count + 1, "flags": flags, "updated_at": now.isoformat()})


def registry() -> ToolRegistry:
    R, W, LOW = ToolKind.READ, ToolKind.WRITE, Impact.LOW
    # Every tool here is statements on the connection it is given: local (framework/deadline.py).
    return ToolRegistry(local=True, tools=[
        Tool("find_requester", FindRequester, R, LOW, find_requester),
        Tool("list_open_tickets", ListOpenTickets, R, LOW, list_open_tickets),
        Tool("list_products", ListProducts, R, LOW, list_products),
        Tool("list_teams", ListTeams, R, LOW, list_teams),
        Tool("get_ticket", GetTicket, R, LOW, get_ticket),
        Tool("create_ticket", CreateTicket, W, LOW, create_ticket),
        Tool("append_to_ticket", AppendToTicket, W, LOW, append_to_ticket),
    ])
