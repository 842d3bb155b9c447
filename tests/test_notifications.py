"""Approval notifications (issue 10, item 6): a new request tells its approvers by webhook and e-mail,
with the console link and only what the pack allows; failures are retried, then escalated; nothing is
sent twice by concurrent deliverers; nothing is sent when no channel is configured. A local webhook
receiver and a local SMTP server (aiosmtpd) stand in for Slack and the mail relay. Time is driven by
passing `now` to the delivery, never by sleeping."""

import email
import email.policy
import json
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from agent_pipelines.framework import audit
from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.notifications import NotificationsPolicy, NotifySettings, Outbox
from agent_pipelines.framework.notify_delivery import LEASE_S, _claim, deliver_due
from agent_pipelines.framework.policy import PolicyError, PolicyPack
from agent_pipelines.framework.tables import approval_events, escalations, notifications
from agent_pipelines.project import Project
from tests.helpers import state
from tests.support import QuietHandler, http_receiver
from tests.test_approvals import waiting

SECRET = "sk-live-PLANTEDsecret0123456789abcdef"
MEMO = f"PLANTED-FREE-TEXT call jane.doe@private.example or use {SECRET}"
APPROVERS = {"alice@corp.example", "bob@corp.example", "carol@corp.example"}
CONSOLE = "http://console.test:3200"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A local webhook endpoint: records every POST; answers 503 while `fail` is positive (or always)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.fail, self.status = 0, 503
        self._lock = threading.Lock()

    def keys(self) -> list[str]:
        return [h["idempotency-key"] for h, _ in self.posts]


@pytest.fixture
def webhook() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with rec._lock:
                rec.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = rec.fail != 0
                rec.fail -= 1 if rec.fail > 0 else 0
            self.send_response(rec.status if failing else 200)
            self.end_headers()
            self.wfile.write(b"ok")

    with http_receiver(Handler) as url:
        yield rec, f"{url}/hooks/T000/B000/secret-part"


class MailInbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[MailInbox, int]]:
    inbox, port = MailInbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def with_channels(seeded: Project, **notify: Any) -> Project:
    """The seeded project's state with notification channels configured (as the environment would)."""
    settings = seeded.settings.model_copy(update={"notify": NotifySettings(console_url=CONSOLE, **notify)})
    project = Project(settings)
    project.prepare()
    return project


@pytest.fixture
def both(seeded: Project, webhook, smtp) -> Iterator[Project]:  # type: ignore[no-untyped-def]
    project = with_channels(seeded, webhook_url=webhook[1], smtp_host="127.0.0.1", smtp_port=smtp[1])
    yield project
    if "instance" in project.__dict__:
        project.instance.dispose()


@pytest.fixture
def hook_only(seeded: Project, webhook) -> Iterator[Project]:  # type: ignore[no-untyped-def]
    project = with_channels(seeded, webhook_url=webhook[1], max_attempts=5, backoff_s=30, max_backoff_s=300)
    yield project
    if "instance" in project.__dict__:
        project.instance.dispose()


def rows(project: Project) -> list[dict[str, Any]]:
    with project.db.connect() as conn:
        return [dict(r) for r in conn.execute(select(notifications).order_by(notifications.c.channel,
                                                                             notifications.c.recipient)).mappings()]


def events(project: Project, kind: str) -> list[dict[str, Any]]:
    with project.db.connect() as conn:
        return [dict(r) for r in conn.execute(select(approval_events).where(approval_events.c.kind == kind)
                                              .order_by(approval_events.c.seq)).mappings()]


def deliver(project: Project, now: datetime | None = None):  # type: ignore[no-untyped-def]
    return deliver_due(project.db, project.approval_key, project.settings.notify, now=now)


def test_a_new_request_notifies_by_webhook_and_email_with_only_what_the_pack_allows(both, webhook, smtp, drop):
    rec, _ = webhook
    inbox, _ = smtp
    drop("inv-big.json", json.dumps({
        "invoice_number": "INV-900", "vendor": "V-1", "po_number": "PO-3", "currency": "USD",
        "invoice_date": "2026-11-03", "due_date": "2026-12-03", "total": "90,000.00",
        "lines": [{"description": "Server rack", "sku": "SRV", "qty": 3, "unit_price": "30,000.00"}],
        "memo": MEMO}).encode())
    both.tick()  # the invoice sensor's run asks for approval and queues the notifications with the request
    [req_intent] = both.intents("invoice_matching")
    assert req_intent["state"] == "waiting_for_approval"
    queued = rows(both)
    assert [(r["channel"], r["status"]) for r in queued] == [("email", "pending")] * 3 + [("webhook", "pending")]
    both.tick()  # approvals__notify delivers them
    assert {(r["status"], r["attempts"]) for r in rows(both)} == {("sent", 1)}
    approval_id = queued[0]["approval_id"]
    link = f"{CONSOLE}/requests/{approval_id}"

    [(headers, body)] = rec.posts
    webhook_row = next(r for r in queued if r["channel"] == "webhook")
    assert headers["idempotency-key"] == webhook_row["notification_id"]
    assert link in body["text"] and "invoice_matching" in body["text"] and approval_id in body["text"]
    assert [b["type"] for b in body["blocks"]] == ["section", "section", "section"]
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n")[1] for f in body["blocks"][1]["fields"]}
    assert fields == {"facts.amount_cents": "9000000", "context.vendor.name": "Acme Supply",
                      "proposal.po_number": "PO-3", "facts.abs_variance_cents": "0"}

    assert sorted(to for tos, _ in inbox.messages for to in tos) == sorted(APPROVERS)
    for tos, msg in inbox.messages:
        assert msg["To"] == tos[0] and msg["Message-ID"] == f"<{next(r['notification_id'] for r in queued if r['recipient'] == tos[0])}@agent-pipelines>"
        assert link in msg.get_content() and "amount_cents: 9000000" in msg.get_content()
    # Nothing of the intake's free text, its planted secret or PII, or the vendor's bank account.
    sent = json.dumps([b for _, b in rec.posts]) + "".join(m.as_string() for _, m in inbox.messages)
    for leaked in ("PLANTED-FREE-TEXT", SECRET, "jane.doe", "DE89370400440532013000", "Thanks"):
        assert leaked not in sent
    assert len(events(both, "notified")) == 4
    assert audit.verify(both.db, both.approval_key).intact


def test_a_503_twice_is_retried_with_backoff_and_delivered_on_the_third_attempt(hook_only, webhook):
    rec, _ = webhook
    rec.fail = 2
    waiting(hook_only)
    t0 = utcnow()
    first = deliver(hook_only, t0)
    assert (first.sent, len(first.retrying)) == ([], 1)
    [row] = rows(hook_only)
    assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "HTTP 503 from the webhook")
    assert not deliver(hook_only, t0 + timedelta(seconds=29)).retrying  # backoff: not due before 30 s
    assert len(rec.posts) == 1
    assert deliver(hook_only, t0 + timedelta(seconds=31)).retrying
    assert rows(hook_only)[0]["attempts"] == 2
    third = deliver(hook_only, t0 + timedelta(seconds=31 + 61))  # the second backoff is 60 s
    assert len(third.sent) == 1
    [row] = rows(hook_only)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert rec.keys() == [row["notification_id"]] * 3  # the same idempotency key on every attempt
    [event] = events(hook_only, "notified")
    assert event["payload"]["attempts"] == 3


def test_always_failing_is_marked_failed_after_max_attempts_and_escalated(hook_only, webhook):
    rec, _ = webhook
    rec.fail = -1  # always 503
    waiting(hook_only)
    now = utcnow()
    for _ in range(7):
        deliver(hook_only, now)
        now += timedelta(seconds=301)  # past the capped backoff
    [row] = rows(hook_only)
    assert (row["status"], row["attempts"]) == ("failed", 5) and len(rec.posts) == 5
    with hook_only.db.connect() as conn:
        [esc] = conn.execute(select(escalations).where(escalations.c.kind == "notification_failed")).mappings()
    assert esc["subject"] == row["notification_id"] and "nobody was told" in esc["message"]
    assert "secret-part" not in esc["message"] and "secret-part" not in (row["last_error"] or "")
    assert [e["payload"]["attempts"] for e in events(hook_only, "notify_failed")] == [5]
    assert events(hook_only, "escalated")[-1]["payload"]["kind"] == "notification_failed"
    assert audit.verify(hook_only.db, hook_only.approval_key).intact


def test_a_permanent_http_error_fails_at_once(hook_only, webhook):
    rec, _ = webhook
    rec.fail, rec.status = -1, 404
    waiting(hook_only)
    report = deliver(hook_only)
    assert len(report.failed) == 1 and len(rec.posts) == 1
    assert rows(hook_only)[0]["last_error"] == "HTTP 404 from the webhook"


def test_no_double_send_sequential_or_concurrent(both, webhook, smtp):
    rec, _ = webhook
    inbox, _ = smtp
    waiting(both)
    waiting(both, total_cents=130_000, invoice_number="INV-101")
    assert len(rows(both)) == 8
    now = utcnow()
    barrier = threading.Barrier(2)
    reports = []

    def run() -> None:
        barrier.wait(timeout=30)
        reports.append(deliver(both, now))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(reports) == 2 and sum(len(r.sent) for r in reports) == 8
    again = deliver(both, now)  # a later sequential tick finds nothing due
    assert again.line() == "no notifications due"
    assert len(rec.posts) == 2 and len(set(rec.keys())) == 2
    assert sorted(to for tos, _ in inbox.messages for to in tos) == sorted([*APPROVERS, *APPROVERS])
    assert {r["attempts"] for r in rows(both)} == {1}


def test_a_claim_whose_process_died_is_sent_again_after_the_lease_with_the_same_key(hook_only, webhook):
    rec, _ = webhook
    waiting(hook_only)
    [row] = rows(hook_only)
    now = utcnow()
    assert _claim(hook_only.db, row, now) == 1  # claimed, then the process "dies" before sending
    assert deliver(hook_only, now).line() == "no notifications due"  # leased: nobody else takes it
    assert len(deliver(hook_only, now + timedelta(seconds=LEASE_S + 1)).sent) == 1
    assert rec.keys() == [row["notification_id"]] and rows(hook_only)[0]["attempts"] == 2


def test_nothing_is_sent_or_failed_when_no_channel_is_configured(seeded, webhook):
    rec, _ = webhook
    assert seeded.settings.notify.configured() == set()
    intent_id, _ = waiting(seeded)
    assert rows(seeded) == []
    ticks = {t.sensor: t for t in seeded.tick()}
    assert "approvals__notify" in ticks
    assert deliver(seeded).line() == "no notifications due"
    assert rec.posts == [] and events(seeded, "notify_failed") == []
    assert state(seeded, intent_id) == "waiting_for_approval"


def test_only_channels_both_in_the_pack_and_configured_are_queued():
    hook = NotifySettings(webhook_url="http://h")
    mail = NotificationsPolicy(channels=("email",), email_to=("ops@corp.example",))
    assert Outbox(policy=None, settings=hook).targets() == []  # a pack without the section
    assert Outbox(policy=mail, settings=hook).targets() == []  # e-mail in the pack, no SMTP server here
    both = NotificationsPolicy(channels=("webhook", "email"), email_to=("ops@corp.example",))
    assert Outbox(policy=both, settings=hook).targets() == [("webhook", "")]


def test_the_message_holds_only_included_fields_redacted():
    policy = NotificationsPolicy(channels=("webhook",), include=(
        "amount_cents", "facts.contact_email", "proposal.note", "context.vendor.name", "facts.missing"))
    out = Outbox(policy=policy, settings=NotifySettings(webhook_url="http://x", console_url="http://c/"),
                 redact_fields=("contact_email",))
    now = utcnow()
    req = {"approval_id": "apr-1", "workflow": "wf", "created_at": now, "expires_at": now + timedelta(hours=1),
           "payload": {"proposal": {"note": f"use {SECRET}\nthen <http://evil|click>", "other": "HIDDEN"}},
           "evidence": {"facts": {"amount_cents": 5, "contact_email": "x@y.example"}, "intake": {"text": "HIDDEN"},
                        "context": {"vendor": {"name": "Acme"}}}}
    msg = out.message(req)
    assert msg["link"] == "http://c/requests/apr-1"
    assert msg["fields"]["amount_cents"] == "5" and msg["fields"]["context.vendor.name"] == "Acme"
    assert msg["fields"]["facts.contact_email"].startswith("[REDACTED")
    assert SECRET not in msg["fields"]["proposal.note"] and "\n" not in msg["fields"]["proposal.note"]
    assert "facts.missing" not in msg["fields"] and "HIDDEN" not in json.dumps(msg)
    from agent_pipelines.framework.notifications import slack_payload

    assert "<http://evil" not in json.dumps(slack_payload(msg, now)["blocks"][1])


@pytest.mark.parametrize("section, why", [
    ("{channels: [email], email_to: {mallory: m@corp.example}}", "not approvers"),
    ("{channels: [email]}", "needs email_to"),
    ("{channels: [webhook], include: [intake.text; rm]}", "include entries"),
    ("{channels: [email], email_to: ['a@b.example\\r\\nBcc: x@evil.example']}", "plain e-mail"),
    ("{channels: [sms]}", "channels"),
])
def test_a_bad_notifications_section_fails_at_load(section, why):
    base = ("workflow: wf\nversion: '1'\nallowed_tools: []\napproval: {approvers: {alice: [r]}, "
            "allowed_roles: [r]}\n")
    with pytest.raises(PolicyError, match=why):
        PolicyPack.from_yaml(base + f"notifications: {section}\n")


def test_packs_without_the_section_keep_their_digest():
    base = "workflow: wf\nversion: '1'\nallowed_tools: []\n"
    plain = PolicyPack.from_yaml(base)
    assert plain.digest == PolicyPack.from_yaml(base + "notifications: null\n").digest
    assert plain.digest != PolicyPack.from_yaml(base + "notifications: {channels: [webhook]}\n").digest


def test_settings_read_the_channels_from_the_environment():
    s = NotifySettings.from_env({"AGENT_PIPELINES_NOTIFY_WEBHOOK_URL": "http://h", "AGENT_PIPELINES_SMTP_HOST": "mx",
                                 "AGENT_PIPELINES_SMTP_PORT": "2525", "AGENT_PIPELINES_SMTP_STARTTLS": "true",
                                 "AGENT_PIPELINES_CONSOLE_URL": "https://console.example/"})
    assert (s.webhook_url, s.smtp_host, s.smtp_port, s.smtp_starttls, s.console_url) == (
        "http://h", "mx", 2525, True, "https://console.example")
    assert NotifySettings.from_env({}).configured() == set()
