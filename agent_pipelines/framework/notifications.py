"""Approval notifications: which channels tell the approvers about a new request, and what the message
may say.

A pack's `notifications:` section names the channels (webhook, email), the approvers' addresses and the
fields (`include`) a message may carry; the deployment's settings say which channels exist here (a
webhook URL, an SMTP server). A request gets one outbox row per channel that is both in the pack and
configured, and per e-mail recipient, in the transaction that stores it (`Outbox.enqueue`, called by
approvals.request_approval); notify_delivery.py sends them. Nothing is configured by default, so
nothing is queued and nothing leaves the machine.

Only what the pack allows goes into a message: the workflow, the approval id, when it was requested
and when it expires, the console link, and the `include` fields read from the request's facts,
proposal or context, each passed through redaction. Never the intake or free text unless a pack names
an intake field explicitly."""

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import dagster as dg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent_pipelines.framework.db import aware
from agent_pipelines.framework.redaction import redact
from agent_pipelines.framework.signing import sha256
from agent_pipelines.framework.sql import insert_ignore
from agent_pipelines.framework.tables import notifications

DEFAULT_CONSOLE_URL = "http://127.0.0.1:3200"
MAX_FIELDS = 10        # a Slack section holds at most 10 fields
MAX_VALUE_CHARS = 200  # one field's rendered value; a message is a pointer to the console, not the evidence

# `root.path`: where an included field is read from. A bare name is a fact.
_ROOTS = {"facts": ("evidence", "facts"), "context": ("evidence", "context"), "intake": ("evidence", "intake"),
          "proposal": ("payload", "proposal")}
_INCLUDE = re.compile(r"(?:(?:facts|context|intake|proposal)(?:\.[A-Za-z0-9_]+)+|[A-Za-z0-9_]+)")
# One plain address: no display name, spaces, or line breaks (which would inject headers).
_ADDRESS = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")


class Channel(StrEnum):
    WEBHOOK = "webhook"  # Slack-compatible JSON POST to AGENT_PIPELINES_NOTIFY_WEBHOOK_URL
    EMAIL = "email"      # one message per recipient over SMTP


class NotifyStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class NotificationsPolicy(BaseModel):
    """The pack's `notifications:` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    channels: tuple[Channel, ...] = ()
    email_to: dict[str, str] | tuple[str, ...] = Field(
        (), description="approver name -> address (names must be the pack's approvers), or a list of addresses")
    include: tuple[str, ...] = Field((), max_length=MAX_FIELDS, description=(
        "fields the message may show: facts.<name> (or a bare name), proposal.<path>, context.<path>, "
        "intake.<path>; each value is redacted"))

    @field_validator("email_to")
    @classmethod
    def _addresses(cls, v: dict[str, str] | tuple[str, ...]) -> dict[str, str] | tuple[str, ...]:
        bad = [a for a in (v.values() if isinstance(v, dict) else v) if not _ADDRESS.fullmatch(a)]
        if bad:
            raise ValueError(f"not plain e-mail addresses: {bad}")
        return v

    @field_validator("include")
    @classmethod
    def _paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [p for p in v if not _INCLUDE.fullmatch(p)]
        if bad:
            raise ValueError(f"include entries must be facts.<name>, proposal.<path>, context.<path>, "
                             f"intake.<path> or a fact name: {bad}")
        return v

    def problems(self, approvers: dict[str, Any]) -> list[str]:
        """What contradicts the rest of the pack (its approvers)."""
        out = []
        if isinstance(self.email_to, dict) and (unknown := sorted(set(self.email_to) - set(approvers))):
            out.append(f"notifications.email_to names people who are not approvers: {unknown}")
        if Channel.EMAIL in self.channels and not self.email_to:
            out.append("notifications: the email channel needs email_to")
        return out

    def addresses(self) -> list[str]:
        return sorted(set(self.email_to.values() if isinstance(self.email_to, dict) else self.email_to))


class NotifySettings(dg.Config):
    """The deployment's channels (Settings.notify; the runtime resource carries them to runs and sensors).
    A channel without its URL or host is off: nothing is queued for it."""

    webhook_url: str | None = Field(None, repr=False)  # a Slack-style URL is itself a credential
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "agent-pipelines@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = Field(None, repr=False)  # never printed with the settings
    smtp_starttls: bool = False
    console_url: str = DEFAULT_CONSOLE_URL
    timeout_s: float = 5.0
    max_attempts: int = 5
    backoff_s: float = 30.0      # before attempt n+1: backoff_s * 2**(n-1), capped at max_backoff_s
    max_backoff_s: float = 1800.0

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "NotifySettings":
        def opt(name: str) -> str | None:
            return env.get(name) or None

        return cls(webhook_url=opt("AGENT_PIPELINES_NOTIFY_WEBHOOK_URL"), smtp_host=opt("AGENT_PIPELINES_SMTP_HOST"),
                   smtp_port=int(env.get("AGENT_PIPELINES_SMTP_PORT") or 25),
                   smtp_from=env.get("AGENT_PIPELINES_SMTP_FROM") or "agent-pipelines@localhost",
                   smtp_user=opt("AGENT_PIPELINES_SMTP_USER"), smtp_password=opt("AGENT_PIPELINES_SMTP_PASSWORD"),
                   smtp_starttls=(env.get("AGENT_PIPELINES_SMTP_STARTTLS") or "").lower() in ("1", "true", "yes"),
                   console_url=(env.get("AGENT_PIPELINES_CONSOLE_URL") or DEFAULT_CONSOLE_URL).rstrip("/"),
                   max_attempts=int(env.get("AGENT_PIPELINES_NOTIFY_MAX_ATTEMPTS") or 5),
                   backoff_s=float(env.get("AGENT_PIPELINES_NOTIFY_BACKOFF_SECONDS") or 30))

    def configured(self) -> set[Channel]:
        return {c for c, on in ((Channel.WEBHOOK, self.webhook_url), (Channel.EMAIL, self.smtp_host)) if on}

    def delay(self, attempts: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(attempts - 1, 0))


class Outbox(BaseModel):
    """What request_approval needs to queue a request's notifications: the pack's section, its redacted
    field names and the deployment's channels."""

    model_config = ConfigDict(frozen=True)
    policy: NotificationsPolicy | None
    settings: NotifySettings
    redact_fields: tuple[str, ...] = ()

    def targets(self) -> list[tuple[Channel, str]]:
        """(channel, recipient) for each row a request gets: channels in the pack and configured here."""
        if self.policy is None:
            return []
        on = self.settings.configured()
        out: list[tuple[Channel, str]] = [(Channel.WEBHOOK, "")] if Channel.WEBHOOK in self.policy.channels \
            and Channel.WEBHOOK in on else []
        if Channel.EMAIL in self.policy.channels and Channel.EMAIL in on:
            out += [(Channel.EMAIL, a) for a in self.policy.addresses()]
        return out

    def enqueue(self, conn: Any, req: dict[str, Any]) -> int:
        """Queue the request's notifications in the caller's transaction; returns how many rows."""
        targets = self.targets()
        if not targets:
            return 0
        message = self.message(req)
        now = aware(req["created_at"])
        queued = 0
        for channel, recipient in targets:
            nid = "ntf-" + sha256({"approval": req["approval_id"], "channel": str(channel), "to": recipient})[:20]
            queued += insert_ignore(conn, notifications, {
                "notification_id": nid, "approval_id": req["approval_id"], "workflow": req["workflow"],
                "channel": str(channel), "recipient": recipient, "message": message, "status": NotifyStatus.PENDING,
                "attempts": 0, "next_attempt_at": now, "created_at": now}, ["notification_id"])
        return queued

    def message(self, req: dict[str, Any]) -> dict[str, Any]:
        """The content every channel renders: fixed fields, the console link and the allowed fields."""
        assert self.policy is not None
        fields: dict[str, str] = {}
        for path in self.policy.include:
            found, value = _lookup(req, path)
            if found:
                label = path.rsplit(".", 1)[-1]
                # Redacted by key (the pack's redact_fields, secret-looking names) and by content.
                fields[path] = _render(redact({label: value}, self.redact_fields)[label])
        return {"workflow": req["workflow"], "approval_id": req["approval_id"],
                "requested_at": _iso(req["created_at"]), "expires_at": _iso(req["expires_at"]),
                "link": f"{self.settings.console_url.rstrip('/')}/requests/{req['approval_id']}", "fields": fields}


def _lookup(req: dict[str, Any], path: str) -> tuple[bool, Any]:
    root, *rest = path.split(".") if "." in path else ("facts", path)
    column, key = _ROOTS[root]
    value: Any = (req.get(column) or {}).get(key)
    for part in rest:
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _render(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = " ".join(text.split())  # one line: no line breaks reach a header, a Slack block or a log
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 3] + "..."


def _iso(ts: datetime) -> str:
    return aware(ts).astimezone(UTC).isoformat(timespec="seconds")


def _age(message: dict[str, Any], now: datetime) -> str:
    minutes = max(int((now - datetime.fromisoformat(message["requested_at"])).total_seconds() // 60), 0)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def summary(message: dict[str, Any], now: datetime) -> str:
    return (f"Approval needed: {message['workflow']} request {message['approval_id']} (waiting {_age(message, now)}, "
            f"expires {message['expires_at']})")


def text_body(message: dict[str, Any], now: datetime) -> str:
    lines = [summary(message, now), "", *(f"{k}: {v}" for k, v in message["fields"].items()),
             "", f"Review and decide: {message['link']}"]
    return "\n".join(lines) + "\n"


def mrkdwn(text: str) -> str:
    """Slack's escaping: a value cannot open a link or a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Slack-compatible incoming-webhook JSON: `text` (the fallback) and minimal `blocks`."""
    head = mrkdwn(summary(message, now))
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*"}}]
    if message["fields"]:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{mrkdwn(k)}*\n{mrkdwn(v)}"} for k, v in message["fields"].items()]})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{message['link']}|Review and decide>"}})
    return {"text": f"{summary(message, now)}: {message['link']}", "blocks": blocks}
