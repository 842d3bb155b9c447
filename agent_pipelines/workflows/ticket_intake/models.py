"""Typed state of ticket intake: the message as received (intake), what the support desk's system of
record says (context), and the triage the model proposes (proposal)."""

from datetime import datetime
from email.utils import parseaddr
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent_pipelines.framework.workflow import StepModel

WORKFLOW = "ticket_intake"

Category = Literal["bug", "billing", "account_access", "feature_request", "question"]
Priority = Literal["low", "normal", "high", "urgent"]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]
PRIORITIES: tuple[str, ...] = Priority.__args__  # type: ignore[attr-defined]


# -- intake: one row of inbound_messages, as the sensor read it -----------------------------------------
# Limits on what one row may carry: a row over them is recorded as rejected_input with the reason
# (a validation error names the field), never triaged.
MAX_BODY_CHARS = 100_000
MAX_ATTACHMENTS = 100
# RFC 5322 Message-IDs are printable ASCII and may run to a line (998 characters). inbound_messages and
# ticket_messages keep up to 2048 under a unique index: ASCII keeps that index row under PostgreSQL's
# btree limit (about 2,700 bytes), so an id that is not printable ASCII or is longer is rejected here.
MAX_MESSAGE_ID_CHARS = 2048
ATTACHMENT_SHAPE = "a list of objects {filename, content_type, size_bytes}"


class Attachment(StepModel):
    """Metadata only: the workflow never opens attachment content."""

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", max_length=255)
    size_bytes: int = Field(0, ge=0, le=2**62)


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


class MessageIntake(StepModel):
    seq: int
    message_id: str = Field(min_length=1, max_length=MAX_MESSAGE_ID_CHARS)
    version: int = 1
    sender: str = Field("", max_length=320)  # as written by the mail gateway: "jane@acme.example" or "Jane <...>"
    subject: str = Field("", max_length=1000)
    body: str = Field("", max_length=MAX_BODY_CHARS)
    attachments: tuple[Attachment, ...] = ()
    product: str | None = Field(None, max_length=200)  # only when the message came through a form that asks
    received_at: datetime | None = None

    @field_validator("message_id")
    @classmethod
    def _printable_ascii(cls, v: str) -> str:
        """A Message-ID is printable ASCII (RFC 5322); say which character is not, without echoing the id."""
        if v.isascii() and v.isprintable():
            return v
        for i, ch in enumerate(v, start=1):
            if not " " <= ch <= "~":
                raise ValueError(f"message_id must be printable ASCII (RFC 5322); character {i} is {ascii(ch)}")
        return v

    @field_validator("attachments", mode="before")
    @classmethod
    def _attachment_shape(cls, v: Any) -> Any:
        """Say plainly what is wrong with an attachments column of the wrong shape."""
        if v is None:
            return ()
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"attachments must be {ATTACHMENT_SHAPE}, not {kind_of(v)}")
        if len(v) > MAX_ATTACHMENTS:
            raise ValueError(f"{len(v)} attachments; the limit is {MAX_ATTACHMENTS}")
        for i, item in enumerate(v, start=1):
            if not isinstance(item, (dict, Attachment)):
                raise ValueError(f"attachments must be {ATTACHMENT_SHAPE}; item {i} is {kind_of(item)}")
        return v

    @property
    def sender_email(self) -> str:
        """The address part of `sender`, lower-cased: requesters are looked up by it."""
        return parseaddr(self.sender)[1].strip().lower()

    @property
    def text(self) -> str:
        return f"{self.subject}\n{self.body}"


# -- context: read through read-only tools -------------------------------------------------------------
class RequesterSnapshot(StepModel):
    requester_id: str
    email: str
    name: str
    org: str


class TicketSnapshot(StepModel):
    """The fields triage and dedupe rely on (not updated_at: other messages' appends move it)."""

    ticket_id: str
    requester_id: str
    product_id: str
    subject: str
    category: str
    priority: str
    team_id: str
    status: str


class ProductSnapshot(StepModel):
    product_id: str
    name: str
    default_team_id: str


class TeamSnapshot(StepModel):
    team_id: str
    name: str


class TicketMessageRecord(StepModel):
    message_id: str
    intent_id: str | None
    body: str
    attachments: tuple[Attachment, ...] = ()


class TicketRecord(StepModel):
    """A ticket with everything filed on it, read back for VERIFY."""

    ticket: TicketSnapshot
    summary: str
    flags: dict[str, Any]
    created_by_intent: str | None
    messages: tuple[TicketMessageRecord, ...]


class TriageContext(StepModel):
    requester: RequesterSnapshot | None  # None: the sender is not a known requester
    open_tickets: tuple[TicketSnapshot, ...]  # the requester's open tickets: the only dedupe targets
    products: tuple[ProductSnapshot, ...]
    teams: tuple[TeamSnapshot, ...]

    def product(self, product_id: str | None) -> ProductSnapshot | None:
        return next((p for p in self.products if p.product_id == product_id), None)

    def open_ticket(self, ticket_id: str | None) -> TicketSnapshot | None:
        return next((t for t in self.open_tickets if t.ticket_id == ticket_id), None)


# -- proposal: what the model returns (instructor response_model); it decides nothing -------------------
class TriageProposal(BaseModel):
    """How to file one inbound support message: as a new ticket, or on one of the requester's open
    tickets when it continues or repeats that ticket."""

    model_config = ConfigDict(extra="forbid")  # a model output cannot add a field (a tool, an approval)

    category: Category = Field(description="bug, billing, account_access, feature_request or question")
    priority: Priority = Field(description="urgent only for an outage or data loss happening now; high when the "
                                           "requester is blocked; low for feature requests; otherwise normal")
    product_id: str | None = Field(description="product_id of the product the message is about, or null if the "
                                               "message does not say which product")
    team_id: str = Field(min_length=1, max_length=32, description="team_id of the team to assign the ticket to")
    summary: str = Field(min_length=5, max_length=160, description="one line for the ticket list, no line breaks")
    duplicate_of: str | None = Field(
        pattern=r"^T-\d+$",
        description="ticket_id of one of the requester's open tickets that this message continues or repeats, "
                    "or null to open a new ticket")
    rationale: str = Field(max_length=2000, description="why this category, priority, team and ticket")

    @field_validator("summary")
    @classmethod
    def _one_line(cls, v: str) -> str:
        # A multi-line summary breaks the ticket list; a validation error makes instructor re-ask.
        if "\n" in v or "\r" in v:
            raise ValueError("summary must be a single line")
        return v.strip()

    @field_validator("product_id", "team_id")
    @classmethod
    def _ids_upper(cls, v: str | None) -> str | None:
        return v.strip().upper() if v else v
