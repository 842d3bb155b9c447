"""Delivery of queued approval notifications (the outbox of notifications.py), run by the
`approvals__notify` sensor on every tick, on the daemon or under `tick`.

Claim: a due row is taken by a compare-and-set on (status, attempts, due) that counts the attempt and
moves next_attempt_at one lease ahead, so the daemon and a `tick` (or two threads) never send the same
attempt. The send happens outside any transaction; its outcome is written with the same compare-and-set.

At-least-once: a process that dies after the POST or the SMTP DATA and before the row update leaves the
row due again once the lease passes, and it is sent again. Receivers can dedupe: the webhook carries
`Idempotency-Key: <notification id>`, the e-mail the Message-ID `<notification id@agent-pipelines>`.

Retries: transient failures (connection errors, timeouts, HTTP 408/429/5xx, SMTP 4xx) are retried with
capped exponential backoff over next_attempt_at, up to NotifySettings.max_attempts attempts; a permanent
one (another HTTP 4xx, SMTP 5xx) fails at once. A failed row gets a `notification_failed` escalation, so
a person learns that nobody was told. Sent and failed rows are chained in the approval audit log
(`notified`, `notify_failed`). Nothing here raises on a delivery failure.

The kill switch is not consulted: a notification changes no system of record, and while writes are
stopped the people who must decide still need to know a request waits for them."""

import smtplib
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx
from sqlalchemy import select, update

from agent_pipelines.framework import approvals, audit
from agent_pipelines.framework.db import Database, utcnow
from agent_pipelines.framework.notifications import Channel, NotifySettings, NotifyStatus
from agent_pipelines.framework.notifications import slack_payload, summary, text_body
from agent_pipelines.framework.redaction import redact_text
from agent_pipelines.framework.signing import ApprovalKey
from agent_pipelines.framework.tables import approval_requests, notifications

LEASE_S = 60.0        # longer than one send can take (timeouts of a few seconds per step)
TICK_BUDGET_S = 30.0  # a sensor evaluation must finish well within Dagster's gRPC timeout (~60 s)
_TRANSIENT_HTTP = {408, 425, 429}


class SendError(Exception):
    """A delivery attempt failed; `permanent` ones are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        if not (self.sent or self.retrying or self.failed):
            return "no notifications due"
        return f"notifications: {len(self.sent)} sent, {len(self.retrying)} to retry, {len(self.failed)} failed"


def deliver_due(db: Database, key: ApprovalKey, settings: NotifySettings, *, now: datetime | None = None,
                limit: int = 50, budget_s: float = TICK_BUDGET_S) -> DeliveryReport:
    """Send every notification due at `now` (default: the clock) that this caller manages to claim."""
    now = now or utcnow()
    report, started = DeliveryReport(), time.monotonic()
    with db.connect() as conn:
        due = [dict(r) for r in conn.execute(select(notifications).where(
            notifications.c.status == NotifyStatus.PENDING, notifications.c.next_attempt_at <= now)
            .order_by(notifications.c.next_attempt_at, notifications.c.notification_id).limit(limit)).mappings()]
    for row in due:
        if time.monotonic() - started > budget_s:
            break  # the rest stay due for the next tick
        nid = row["notification_id"]
        if row["attempts"] >= settings.max_attempts:
            # Claimed for its last attempt by a process that never reported back (died mid-send).
            if _finish(db, key, row, row["attempts"], NotifyStatus.FAILED, now,
                       error=row["last_error"] or "the last attempt did not report back"):
                report.failed.append(nid)
            continue
        attempt = _claim(db, row, now)
        if attempt is None:
            continue  # another deliverer has it
        try:
            _send(row, settings, now)
        except SendError as exc:
            error, permanent = str(exc), exc.permanent
        except Exception as exc:  # noqa: BLE001 - a delivery failure never raises out of the sensor
            error, permanent = f"{type(exc).__name__}: {redact_text(str(exc))}", False
        else:
            if _finish(db, key, row, attempt, NotifyStatus.SENT, now):
                report.sent.append(nid)
            continue
        error = error[:1000]
        if permanent or attempt >= settings.max_attempts:
            if _finish(db, key, row, attempt, NotifyStatus.FAILED, now, error=error):
                report.failed.append(nid)
        elif _finish(db, key, row, attempt, NotifyStatus.PENDING, now, error=error,
                     retry_at=now + timedelta(seconds=settings.delay(attempt))):
            report.retrying.append(nid)
    return report


def _claim(db: Database, row: dict[str, Any], now: datetime) -> int | None:
    """Count one attempt and lease the row; None when someone else claimed it first."""
    attempt = row["attempts"] + 1
    with db.begin() as conn:
        taken = conn.execute(update(notifications).where(
            notifications.c.notification_id == row["notification_id"], notifications.c.status == NotifyStatus.PENDING,
            notifications.c.attempts == row["attempts"], notifications.c.next_attempt_at <= now).values(
            attempts=attempt, next_attempt_at=now + timedelta(seconds=LEASE_S))).rowcount
    return attempt if taken == 1 else None


def _finish(db: Database, key: ApprovalKey, row: dict[str, Any], attempt: int, status: NotifyStatus,
            now: datetime, *, error: str | None = None, retry_at: datetime | None = None) -> bool:
    """Write an attempt's outcome if the row is still ours (same attempt, still pending), with its audit
    event and, for a failure, the escalation. False when the lease passed and someone else took it."""
    nid, channel = row["notification_id"], row["channel"]
    values: dict[str, Any] = {"status": status, "last_error": error}
    if status == NotifyStatus.SENT:
        values["sent_at"] = now
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    with db.begin() as conn:
        ours = conn.execute(update(notifications).where(
            notifications.c.notification_id == nid, notifications.c.status == NotifyStatus.PENDING,
            notifications.c.attempts == attempt).values(**values)).rowcount == 1
        if not ours or status == NotifyStatus.PENDING:
            return ours
        event = {"notification_id": nid, "channel": channel, "attempts": attempt}
        if status == NotifyStatus.SENT:
            audit.append(conn, key, audit.EventKind.NOTIFIED, row["approval_id"], event)
            return True
        audit.append(conn, key, audit.EventKind.NOTIFY_FAILED, row["approval_id"], event | {"error": error})
        intent_id = conn.execute(select(approval_requests.c.intent_id).where(
            approval_requests.c.approval_id == row["approval_id"])).scalar_one_or_none()
        message = (f"{row['workflow']} approval {row['approval_id']}: the {channel} notification"
                   f"{' to ' + row['recipient'] if row['recipient'] else ''} failed after {attempt} attempt(s) "
                   f"({error}); nobody was told over this channel")[:4000]
        if approvals.escalate(conn, "notification_failed", nid, intent_id, message):
            audit.append(conn, key, audit.EventKind.ESCALATED, row["approval_id"],
                         {"kind": "notification_failed", "message": message})
    return True


def _send(row: dict[str, Any], settings: NotifySettings, now: datetime) -> None:
    if row["channel"] == Channel.WEBHOOK:
        _post(row, settings, now)
    elif row["channel"] == Channel.EMAIL:
        _mail(row, settings, now)
    else:
        raise SendError(f"unknown channel {row['channel']!r}", permanent=True)


def _post(row: dict[str, Any], settings: NotifySettings, now: datetime) -> None:
    if not settings.webhook_url:
        raise SendError("no webhook URL is configured (AGENT_PIPELINES_NOTIFY_WEBHOOK_URL)")
    post_webhook(settings.webhook_url, slack_payload(row["message"], now), timeout_s=settings.timeout_s,
                 idempotency_key=row["notification_id"])


def post_webhook(url: str, payload: dict[str, Any], *, timeout_s: float, idempotency_key: str) -> None:
    """POST Slack-compatible JSON to a webhook; SendError (permanent or not) on any failure. Shared by the
    approval notifications and the scorecard alerts (framework/scorecard_alerts.py)."""
    try:
        resp = httpx.post(url, json=payload, timeout=timeout_s, headers={"Idempotency-Key": idempotency_key})
    except httpx.HTTPError as exc:
        # The URL itself is a credential for Slack-style webhooks: it never reaches an error or the trace.
        raise SendError(f"{type(exc).__name__}: {redact_text(str(exc).replace(url, '<webhook url>'))}") from None
    if resp.is_success:
        return
    code = resp.status_code
    raise SendError(f"HTTP {code} from the webhook", permanent=code < 500 and code not in _TRANSIENT_HTTP)


def email_message(row: dict[str, Any], settings: NotifySettings, now: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = row["recipient"]
    msg["Subject"] = summary(row["message"], now)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{row['notification_id']}@agent-pipelines>"  # the same on a repeated send
    msg.set_content(text_body(row["message"], now))
    return msg


def _mail(row: dict[str, Any], settings: NotifySettings, now: datetime) -> None:
    if not settings.smtp_host:
        raise SendError("no SMTP server is configured (AGENT_PIPELINES_SMTP_HOST)")
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_s) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(email_message(row, settings, now))
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise SendError(f"recipient refused: {codes}", permanent=all(c >= 500 for c in codes)) from None
    except smtplib.SMTPResponseException as exc:
        raise SendError(f"SMTP {exc.smtp_code}: {redact_text(str(exc.smtp_error)[:300])}",
                        permanent=exc.smtp_code >= 500) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(f"{type(exc).__name__}: {redact_text(str(exc))}") from None
