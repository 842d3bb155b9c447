"""Console fixtures: a seeded project with one pending invoice approval whose memo holds markup, and
reviewer tokens for approvers (alice, bob) and a registered reviewer the policy does not let decide
(dave, role ap_clerk)."""

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient

from agent_pipelines.framework import approvals, reviewers
from agent_pipelines.project import Project
from tests.test_approvals import waiting

XSS = "<script>window.__xss=1</script>"


@dataclass
class Case:
    project: Project
    intent_id: str
    approval_id: str
    tokens: dict[str, str] = field(default_factory=dict)

    def request(self) -> dict[str, Any]:
        with self.project.db.connect() as conn:
            return approvals.get(conn, self.approval_id)

    def decisions(self) -> list[dict[str, Any]]:
        with self.project.db.connect() as conn:
            return approvals.decisions(conn, self.approval_id)


@pytest.fixture
def case(seeded: Project) -> Case:
    intent_id, approval_id = waiting(seeded, memo=XSS)
    c = Case(seeded, intent_id, approval_id)
    for name in ("alice", "bob", "dave"):
        c.tokens[name] = reviewers.add(seeded.db, seeded.approval_key, name)[1]
    return c


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(client: TestClient, token: str) -> Any:
    """Log in through the form as a browser does: GET the page (session + CSRF), POST the token."""
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "token": token, "next": "/"},
                       follow_redirects=False)
