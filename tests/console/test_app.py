"""The console's security rules over HTTP (Starlette's TestClient): cookie flags, CSRF on every POST,
escaping, login rate limiting, a revoked reviewer's session, a non-approver, the proxy header."""

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_pipelines.console.app import create_app
from agent_pipelines.console.auth import COOKIE, LoginLimiter, TrustedProxy
from agent_pipelines.framework import approvals, reviewers
from tests.console.conftest import XSS, Case, csrf_of, login


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def client_for(case: Case, **kw: Any) -> TestClient:
    base = kw.pop("base_url", "http://testserver")
    return TestClient(create_app(case.project, env={}, **kw), base_url=base, follow_redirects=False)


def test_login_sets_a_strict_httponly_session_and_shows_the_queue(case: Case) -> None:
    client = client_for(case)
    assert client.get("/").headers["location"].startswith("/login")
    r = login(client, case.tokens["alice"])
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie and case.tokens["alice"] not in cookie  # http here; never the token itself
    queue = client.get("/")
    assert queue.status_code == 200 and case.approval_id in queue.text and "alice" in queue.text
    assert "default-src 'none'" in queue.headers["content-security-policy"]
    assert queue.headers["x-frame-options"] == "DENY"
    # over https the cookie is Secure
    secure = client_for(case, base_url="https://testserver")
    assert "Secure" in login(secure, case.tokens["alice"]).headers["set-cookie"]


def test_request_page_shows_evidence_rules_diff_and_run_link(case: Case) -> None:
    client = client_for(case)
    login(client, case.tokens["alice"])
    page = client.get(f"/requests/{case.approval_id}")
    assert page.status_code == 200
    text = page.text
    for expected in ("variance_above_tolerance_pct", "abs_variance_pct = 20.0",  # the rule and the value it saw
                     "purchase_orders", "invoiced_cents", "120000",  # the PO record: 0 -> 120000
                     "(new record)", "PO-1 is named on the invoice",  # a created record; the rationale
                     f"/runs/{case.request()['run_id']}", "Acme Supply"):
        assert expected in text, expected
    # the vendor's bank account is a redacted field of the pack: never on the page
    assert "DE89370400440532013000" not in text


def test_a_memo_holding_a_script_renders_as_text(case: Case) -> None:
    client = client_for(case)
    login(client, case.tokens["alice"])
    text = client.get(f"/requests/{case.approval_id}").text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in text
    assert XSS not in text and "<script" not in text


def test_every_post_without_the_sessions_csrf_token_is_refused(case: Case) -> None:
    client = client_for(case)
    # login itself: no CSRF token, or another session's
    assert client.post("/login", data={"token": case.tokens["alice"]}).status_code == 403
    other = client_for(case)
    foreign = csrf_of(other.get("/login").text)
    assert client.post("/login", data={"token": case.tokens["alice"], "csrf": foreign}).status_code == 403
    login(client, case.tokens["alice"])
    target = f"/requests/{case.approval_id}"
    for action, data in (("approve", {}), ("deny", {"note": "no"}), ("edit", {"field.pay_amount_cents": "100000"})):
        for csrf in (None, "", foreign):
            body = data | ({"csrf": csrf} if csrf is not None else {})
            r = client.post(f"{target}/{action}", data=body)
            assert r.status_code == 403 and "CSRF" in r.text
    assert client.post("/logout", data={}).status_code == 403
    assert case.decisions() == [] and case.request()["status"] == "pending"


def test_login_failures_are_rate_limited_per_address_and_token(case: Case) -> None:
    clock = Clock()
    client = client_for(case, limiter=LoginLimiter(max_failures=5, window_s=60, clock=clock))
    wrong = case.tokens["alice"][:-4] + "AAAA"
    for _ in range(5):
        r = login(client, wrong)
        assert r.status_code == 401 and "not valid" in r.text
    assert login(client, wrong).status_code == 429
    # the right token from this address is refused too while the window lasts: no oracle for guessing
    assert login(client, case.tokens["alice"]).status_code == 429
    clock.t += 61
    assert login(client, case.tokens["alice"]).status_code == 303


def test_a_revoked_reviewers_session_ends_on_the_next_request(case: Case) -> None:
    client = client_for(case)
    login(client, case.tokens["alice"])
    csrf = csrf_of(client.get(f"/requests/{case.approval_id}").text)
    reviewers.revoke(case.project.db, case.project.approval_key, "alice")
    assert client.get("/").headers["location"].startswith("/login")
    r = client.post(f"/requests/{case.approval_id}/approve", data={"csrf": csrf})
    assert r.status_code in (303, 403) and case.decisions() == []


def test_a_reviewer_the_policy_does_not_allow_is_refused_and_nothing_changes(case: Case) -> None:
    client = client_for(case)
    login(client, case.tokens["dave"])
    csrf = csrf_of(client.get(f"/requests/{case.approval_id}").text)
    r = client.post(f"/requests/{case.approval_id}/approve", data={"csrf": csrf})
    assert r.status_code == 403 and "dave" in r.text and "may not decide" in r.text
    assert case.decisions() == [] and case.request()["status"] == "pending"


def test_deny_needs_a_reason_and_records_it(case: Case) -> None:
    client = client_for(case)
    login(client, case.tokens["alice"])
    csrf = csrf_of(client.get(f"/requests/{case.approval_id}").text)
    refused = client.post(f"/requests/{case.approval_id}/deny", data={"csrf": csrf, "note": "  "})
    assert refused.status_code == 403 and "needs a reason" in refused.text and case.decisions() == []
    done = client.post(f"/requests/{case.approval_id}/deny", data={"csrf": csrf, "note": "duplicate of INV-99"})
    assert done.status_code == 303 and case.request()["status"] == "denied"
    [d] = case.decisions()
    assert (d["decided_by"], d["decision"], d["note"]) == ("alice", "deny", "duplicate of INV-99")


def test_a_trusted_proxys_user_header_signs_in_only_from_the_proxy(case: Case) -> None:
    trusted = TrustedProxy.from_env({"AGENT_PIPELINES_CONSOLE_TRUSTED_HEADER": "X-Forwarded-User",
                                     "AGENT_PIPELINES_CONSOLE_TRUSTED_PROXIES": "127.0.0.1"})
    app = create_app(case.project, env={}, trusted=trusted)
    via_proxy = TestClient(app, client=("127.0.0.1", 40000), follow_redirects=False)
    page = via_proxy.get("/", headers={"X-Forwarded-User": "bob"})
    assert page.status_code == 200 and 'id="reviewer-name">bob<' in page.text
    direct = TestClient(app, client=("10.9.8.7", 40000), follow_redirects=False)
    assert direct.get("/", headers={"X-Forwarded-User": "bob"}).status_code == 303  # to the login page
    with pytest.raises(ValueError, match="PROXIES"):
        TrustedProxy.from_env({"AGENT_PIPELINES_CONSOLE_TRUSTED_HEADER": "X-Forwarded-User"})


def test_the_request_carries_its_console_link(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from agent_pipelines.cli import app

    link = approvals.console_link(case.project.settings.console_url, case.approval_id)
    assert link == f"http://127.0.0.1:3200/requests/{case.approval_id}"
    run = case.project.instance.get_run_by_id(case.request()["run_id"])
    assert run is not None and run.tags["agent_pipelines/console_url"] == link
    monkeypatch.setenv("AGENT_PIPELINES_DB_URL", case.project.settings.db_url)
    out = CliRunner().invoke(app, ["approvals", "list", "--json", "--state-dir", str(case.project.settings.state_dir)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["pending"][0]["console_url"] == link


def test_decided_expired_and_escalated_requests_show_who_and_when(case: Case) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from agent_pipelines.framework.db import utcnow
    from agent_pipelines.framework.tables import approval_requests

    with case.project.db.begin() as conn:
        conn.execute(update(approval_requests).values(expires_at=utcnow() - timedelta(minutes=1)))
    assert [r["approval_id"] for r in approvals.expire_overdue(case.project.db, case.project.approval_key)] == [
        case.approval_id]
    client = client_for(case)
    login(client, case.tokens["alice"])
    queue = client.get("/").text
    assert "Pending approval requests (0)" in queue
    closed = queue[queue.index('id="closed"'):]
    assert case.approval_id in closed and "expired unanswered at" in closed and "approval_expired at" in closed
    page = client.get(f"/requests/{case.approval_id}").text
    assert 'id="status">expired<' in page and "approval_expired" in page and 'id="approve"' not in page


def test_the_console_command_serves_the_app(case: Case, tmp_path: Any) -> None:
    """`agent-pipelines console --port N` starts and answers (its process is ours: stopped by its id)."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AGENT_PIPELINES_DB_URL": case.project.settings.db_url}
    proc = subprocess.Popen([sys.executable, "-m", "agent_pipelines.cli", "console", "--port", str(port),
                             "--state-dir", str(case.project.settings.state_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:  # readiness: poll the health endpoint within a deadline
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the console did not start"
            time.sleep(0.1)
        r = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_dropped_invoices_page_shows_its_source_excerpt_with_secrets_and_pii_masked(seeded: Any, drop: Any) -> None:
    from tests.conftest import invoice_json
    from tests.test_canary import TEXT, leaks

    drop("secret.json", invoice_json(invoice_number="INV-101", total="1,200.00", memo=f"<b>hi</b> {TEXT}"))
    assert all(r.success for t in seeded.tick() for r in t.runs)
    [req] = approvals.pending(seeded.db)
    _, token = reviewers.add(seeded.db, seeded.approval_key, "alice")
    client = TestClient(create_app(seeded, env={}), follow_redirects=False)
    login(client, token)
    page = client.get(f"/requests/{req['approval_id']}").text
    excerpt = page[page.index('id="source-excerpt"'):]
    assert "INV-101" in excerpt and "&lt;b&gt;hi&lt;/b&gt;" in excerpt and "[REDACTED:" in excerpt
    assert leaks(page) == {}, leaks(page)
