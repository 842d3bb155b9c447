"""The reviewer console in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium,
installed by .ci/run; no browser download). One browser per module; each test gets its own project,
pending request and console served by uvicorn on a free port.

Missing Chromium fails the module under CI=true (never a silent skip there); locally it skips."""

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agent_pipelines.console.app import create_app
from agent_pipelines.framework import approvals
from agent_pipelines.framework.intents import IntentStore
from agent_pipelines.framework.tables import writes
from tests.console.conftest import XSS, Case
from tests.test_approvals import continuation_runs, n

# Playwright's sync API keeps an event loop on this thread; Dagster's in-process runs (the fixture's agent
# run, the continuation) then leave a never-awaited shutdown coroutine behind. Noise, not a failure.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine 'BaseEventLoop.shutdown_asyncgens' was never awaited")

CHROMIUM = os.environ.get("AGENT_PIPELINES_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing: `apt-get install chromium` (the Debian package; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The app on uvicorn in a thread, on a free port; yields its base URL once /healthz answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while True:  # readiness: poll the health endpoint until it answers, within a deadline
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the console did not start on {base}")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def console(case: Case, browser: Browser) -> Iterator[tuple[str, Page]]:
    context = browser.new_context()
    with serve(create_app(case.project, env={})) as base:
        yield base, context.new_page()
    context.close()


def log_in(page: Page, base: str, token: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def open_request(page: Page, base: str, case: Case) -> None:
    page.goto(f"{base}/requests/{case.approval_id}")
    expect(page.locator("#status")).to_have_text("pending")


def test_log_in_with_a_token_wrong_tokens_are_refused_then_rate_limited(case: Case, console: tuple[str, Page]) -> None:
    base, page = console
    wrong = case.tokens["alice"][:-4] + "AAAA"
    for _ in range(5):
        log_in(page, base, wrong)
        expect(page.locator("#error")).to_contain_text("not valid")
    log_in(page, base, wrong)
    expect(page.locator("#error")).to_contain_text("Too many failed logins")
    # another browser (address is the same: 127.0.0.1) with the right token: still refused for the window
    log_in(page, base, case.tokens["bob"])
    expect(page.locator("#error")).to_contain_text("Too many failed logins")


def test_log_in_shows_the_queue_and_approve_commits_through_the_continuation(case: Case,
                                                                             console: tuple[str, Page]) -> None:
    base, page = console
    log_in(page, base, case.tokens["alice"])
    expect(page.locator("#reviewer-name")).to_have_text("alice")
    expect(page.locator("#pending")).to_contain_text(case.approval_id)
    page.click(f"#pending a[href='/requests/{case.approval_id}']")
    expect(page.locator("#rules")).to_contain_text("abs_variance_pct = 20.0")
    page.fill("#approve-note", "freight agreed by phone")
    page.click("#approve button[type=submit]")
    expect(page.locator("#flash")).to_have_text("Approved.")
    expect(page.locator("#status")).to_have_text("approved")
    expect(page.locator("#decisions")).to_contain_text("alice")
    # the database holds alice's signed decision, and the continuation verifies and commits it
    with case.project.db.connect() as conn:
        approved = approvals.verify_approved(conn, case.project.approval_key, _wf().policy, case.approval_id)
    [d] = approved["decisions"]
    assert (d["decided_by"], d["decision"], d["note"]) == ("alice", "approve", "freight agreed by phone")
    runs = continuation_runs(case.project)
    assert [r.success for r in runs] == [True]
    assert IntentStore(case.project.db).get(case.intent_id).state == "completed" and n(case.project, writes) == 3


def test_deny_with_a_reason(case: Case, console: tuple[str, Page]) -> None:
    base, page = console
    log_in(page, base, case.tokens["bob"])
    open_request(page, base, case)
    page.fill("#deny-reason", "vendor disputes the freight line")
    page.click("#deny button[type=submit]")
    expect(page.locator("#flash")).to_contain_text("Denied")
    expect(page.locator("#status")).to_have_text("denied")
    [d] = case.decisions()
    assert (d["decided_by"], d["decision"], d["note"]) == ("bob", "deny", "vendor disputes the freight line")
    assert IntentStore(case.project.db).get(case.intent_id).state == "denied"


def test_edit_and_approve_is_revalidated(case: Case, console: tuple[str, Page]) -> None:
    base, page = console
    log_in(page, base, case.tokens["alice"])
    open_request(page, base, case)
    page.fill("#field-pay_amount_cents", "10000000")  # more than the invoice: the model's validator refuses
    page.click("#edit button[type=submit]")
    expect(page.locator("#error")).to_contain_text("cannot exceed")
    expect(page.locator("#status")).to_have_text("pending")
    assert case.decisions() == []
    page.fill("#field-pay_amount_cents", "100000")
    page.fill("#edit-note", "pay the PO amount")
    page.click("#edit button[type=submit]")
    expect(page.locator("#flash")).to_have_text("The edited change is approved.")
    req = case.request()
    assert req["status"] == "approved" and req["approved_payload"]["proposal"]["pay_amount_cents"] == 100_000
    assert req["payload"]["proposal"]["pay_amount_cents"] is None  # the original is kept beside the edit
    assert [d["decision"] for d in case.decisions()] == ["edit"]


def test_a_post_without_the_csrf_token_is_refused(case: Case, console: tuple[str, Page]) -> None:
    base, page = console
    log_in(page, base, case.tokens["alice"])
    open_request(page, base, case)
    # the browser context's request API sends the session cookie, but not the page's hidden CSRF field
    r = page.context.request.post(f"{base}/requests/{case.approval_id}/approve", form={"note": "forged"})
    assert r.status == 403 and "CSRF" in r.text()
    r = page.context.request.post(f"{base}/requests/{case.approval_id}/approve", form={"csrf": "guess"})
    assert r.status == 403
    assert case.decisions() == [] and case.request()["status"] == "pending"


def test_a_non_approver_is_refused(case: Case, console: tuple[str, Page]) -> None:
    base, page = console
    log_in(page, base, case.tokens["dave"])
    open_request(page, base, case)
    page.click("#approve button[type=submit]")
    expect(page.locator("#error")).to_contain_text("dave may not decide invoice_matching approvals")
    expect(page.locator("#status")).to_have_text("pending")
    assert case.decisions() == []


def test_a_script_in_the_invoice_memo_is_inert_text(case: Case, console: tuple[str, Page]) -> None:
    base, page = console
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in(page, base, case.tokens["alice"])
    open_request(page, base, case)
    expect(page.locator("#intake td[data-field=memo]")).to_have_text(XSS)
    assert page.evaluate("typeof window.__xss") == "undefined" and dialogs == []
    assert page.locator("script").count() == 0


def _wf() -> Any:
    from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching

    return InvoiceMatching()
