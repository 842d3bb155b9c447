"""The reviewer console: a small Starlette app over the same approval functions as the CLI.

Routes: GET /login, POST /login (a reviewer token), POST /logout, GET / (the pending queue and the
recently closed requests), GET /requests/<id> (the request page), POST /requests/<id>/approve | deny |
edit, GET /healthz. Decisions go through `review.decide_request` with the authenticated `Reviewer`,
exactly as `agent-pipelines approvals …` does: the console holds no decision logic of its own.

A POST without this session's CSRF token is refused with 403 before anything else runs. A refused
decision (not an approver, already decided, an edit that fails re-validation…) re-renders the page
with the reason and status 403; nothing changed."""

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from agent_pipelines.console import views
from agent_pipelines.console.auth import (
    CSRF_FIELD,
    LoginLimiter,
    Session,
    Sessions,
    TrustedProxy,
    csrf_ok,
)
from agent_pipelines.framework import access, reviewers
from agent_pipelines.framework.approvals import DecisionKind, DecisionRefused
from agent_pipelines.framework.review import decide_request, workflow_of
from agent_pipelines.framework.reviewers import Reviewer, ReviewerRefused
from agent_pipelines.framework.workflow import Workflow
from agent_pipelines.project import Project

TEMPLATES = Path(__file__).parent / "templates"
# No script runs on these pages at all: even a markup injection that escaped escaping would be inert.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
FLASH = {"approve": "Approved.", "approve-partial": "Your approval is recorded; another approver is needed.",
         "deny": "Denied: nothing will be written.", "edit": "The edited change is approved.",
         "edit-partial": "Your edited change is recorded; another approver is needed."}


def parse_value(raw: str) -> Any:
    """A form value as `approvals edit --set` parses it: JSON when it is JSON, else the text."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class Console:
    def __init__(self, project: Project, workflows: Mapping[str, Workflow], *, limiter: LoginLimiter | None = None,
                 trusted: TrustedProxy | None = None) -> None:
        self.project, self.workflows = project, dict(workflows)
        self.key = project.approval_key
        self.sessions = Sessions(self.key, always_secure=project.settings.console_url.startswith("https://"))
        self.limiter = limiter or LoginLimiter()
        self.trusted = trusted
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                 undefined=jinja2.StrictUndefined)
        self.templates = Jinja2Templates(env=env)

    # -- plumbing ---------------------------------------------------------------------------------
    def render(self, request: Request, session: Session, name: str, status: int = 200, **ctx: Any) -> Response:
        response = self.templates.TemplateResponse(request, name, {"csrf": session.csrf, "csrf_field": CSRF_FIELD,
                                                                   **ctx}, status_code=status)
        return self.finish(request, response, session)

    def finish(self, request: Request, response: Response, session: Session) -> Response:
        if session.fresh:
            self.sessions.save(request, response, session)
        response.headers.update(SECURITY_HEADERS)
        return response

    def reviewer(self, request: Request, session: Session) -> Reviewer | None:
        """The signed-in reviewer, re-checked against the reviewers table on every request."""
        if self.trusted is not None and (user := self.trusted.user(request)):
            return reviewers.active(self.project.db, self.key, name=user)
        if session.token_id is None:
            return None
        found = reviewers.active(self.project.db, self.key, token_id=session.token_id)
        if found is None or found.name != session.name:  # revoked since login: the session ends here
            session.token_id = session.name = None
            session.fresh = True
            return None
        return found

    def to_login(self, request: Request, session: Session) -> Response:
        target = quote(request.url.path, safe="/")
        return self.finish(request, RedirectResponse(f"/login?next={target}", status_code=303), session)

    def refused_csrf(self, request: Request, session: Session) -> Response:
        return self.finish(request, PlainTextResponse("refused: missing or wrong CSRF token; nothing changed",
                                                      status_code=403), session)

    # -- pages ------------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def stylesheet(self, request: Request) -> Response:
        return Response((TEMPLATES / "console.css").read_text(), media_type="text/css",
                        headers={"X-Content-Type-Options": "nosniff"})

    # Handlers that touch the database or hash a token are plain functions or hand their work to the
    # thread pool: scrypt and queries must not stall the event loop for other reviewers.
    def login_page(self, request: Request) -> Response:
        session = self.sessions.load(request)
        if self.reviewer(request, session) is not None:
            return self.finish(request, RedirectResponse("/", status_code=303), session)
        return self.render(request, session, "login.html", next=_safe_next(request.query_params.get("next")),
                           error=None)

    async def login(self, request: Request) -> Response:
        session = self.sessions.load(request)
        form = await request.form()
        if not csrf_ok(session, form.get(CSRF_FIELD)):
            return self.refused_csrf(request, session)
        return await run_in_threadpool(self._login, request, session, form)

    def _login(self, request: Request, session: Session, form: Any) -> Response:
        token = str(form.get("token") or "")
        client = request.client.host if request.client else "unknown"
        keys = [f"addr:{client}"] + ([f"token:{tid}"] if (tid := reviewers.token_id_of(token)) else [])
        nxt = _safe_next(str(form.get("next") or ""))
        if self.limiter.blocked(keys):
            return self.render(request, session, "login.html", status=429, next=nxt,
                               error="Too many failed logins: wait a minute and try again.")
        try:
            who = reviewers.authenticate(self.project.db, self.key, token)
        except ReviewerRefused as exc:
            self.limiter.failed(keys)
            return self.render(request, session, "login.html", status=401, next=nxt, error=str(exc))
        # A new session (and CSRF token) at login: a session planted before it is worth nothing after.
        fresh = Session(token_id=who.token_id, name=who.name, fresh=True)
        return self.finish(request, RedirectResponse(nxt, status_code=303), fresh)

    async def logout(self, request: Request) -> Response:
        session = self.sessions.load(request)
        form = await request.form()
        if not csrf_ok(session, form.get(CSRF_FIELD)):
            return self.refused_csrf(request, session)
        return self.finish(request, RedirectResponse("/login", status_code=303), Session(fresh=True))

    def queue(self, request: Request) -> Response:
        session = self.sessions.load(request)
        if (who := self.reviewer(request, session)) is None:
            return self.to_login(request, session)
        return self.render(request, session, "queue.html", reviewer=who, pending=views.queue(self.project.db),
                           closed=views.closed(self.project.db))

    def request_page(self, request: Request) -> Response:
        session = self.sessions.load(request)
        if (who := self.reviewer(request, session)) is None:
            return self.to_login(request, session)
        done = FLASH.get(request.query_params.get("done", ""))
        return self.page(request, session, who, request.path_params["approval_id"], flash=done)

    def page(self, request: Request, session: Session, who: Reviewer, approval_id: str, *, flash: str | None = None,
             error: str | None = None, status: int = 200) -> Response:
        try:
            wf, req = workflow_of(self.project.db, self.workflows, approval_id)
        except DecisionRefused as exc:
            return self.render(request, session, "missing.html", status=404, reviewer=who, error=str(exc))
        # The page shows the intent's evidence and trace: the read is logged before it is rendered.
        access.log_read(self.project.db, actor=who.name, via=access.Via.CONSOLE, what="request page",
                        intent_id=req["intent_id"], run_id=req["run_id"], approval_id=approval_id)
        data = views.detail(self.project.db, wf, self.project.settings, approval_id)
        return self.render(request, session, "request.html", status=status, reviewer=who, r=data, flash=flash,
                           error=error)

    async def decide(self, request: Request) -> Response:
        session = self.sessions.load(request)
        form = await request.form()
        if not csrf_ok(session, form.get(CSRF_FIELD)):
            return self.refused_csrf(request, session)
        return await run_in_threadpool(self._decide, request, session, form)

    def _decide(self, request: Request, session: Session, form: Any) -> Response:
        if (who := self.reviewer(request, session)) is None:
            return self.to_login(request, session)
        approval_id, action = request.path_params["approval_id"], request.path_params["action"]
        if action not in {k.value for k in DecisionKind}:
            return self.finish(request, PlainTextResponse("not found", status_code=404), session)
        note = str(form.get("note") or "").strip() or None
        changes = None
        if action == "edit":
            changes = self.changes(approval_id, form)
        try:
            after = decide_request(self.project.db, self.key, self.workflows, approval_id, reviewer=who,
                                   kind=DecisionKind(action), note=note, changes=changes)
        except DecisionRefused as exc:
            return self.page(request, session, who, approval_id, error=str(exc), status=403)
        done = action if after["status"] in ("approved", "denied") else f"{action}-partial"
        return self.finish(request, RedirectResponse(f"/requests/{approval_id}?done={done}", status_code=303), session)

    def changes(self, approval_id: str, form: Any) -> dict[str, Any]:
        """The proposal fields the form changed (the others are not sent as edits)."""
        try:
            wf, _ = workflow_of(self.project.db, self.workflows, approval_id)
            current = {row["field"]: row["form_value"] for row in
                       views.detail(self.project.db, wf, self.project.settings, approval_id)["proposal"]}
        except DecisionRefused:
            return {}
        out: dict[str, Any] = {}
        for field, shown in current.items():
            sent = form.get(f"field.{field}")
            if isinstance(sent, str) and sent != shown:
                out[field] = parse_value(sent) if sent.strip() else None
        return out


def _safe_next(target: str | None) -> str:
    """Only a local path: a login link must not bounce a reviewer to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def create_app(project: Project, workflows: Mapping[str, Workflow] | None = None, *,
               limiter: LoginLimiter | None = None, trusted: TrustedProxy | None = None,
               env: dict[str, str] | None = None) -> Starlette:
    if workflows is None:
        from agent_pipelines.workflows import all_workflows

        workflows = {wf.name: wf for wf in all_workflows()}
    if trusted is None:
        trusted = TrustedProxy.from_env(dict(os.environ if env is None else env))
    c = Console(project, workflows, limiter=limiter, trusted=trusted)
    app = Starlette(routes=[
        Route("/healthz", c.healthz),
        Route("/console.css", c.stylesheet),
        Route("/login", c.login_page, methods=["GET"]),
        Route("/login", c.login, methods=["POST"]),
        Route("/logout", c.logout, methods=["POST"]),
        Route("/", c.queue),
        Route("/requests/{approval_id}", c.request_page),
        Route("/requests/{approval_id}/{action:str}", c.decide, methods=["POST"]),
    ])
    app.state.console = c
    return app

