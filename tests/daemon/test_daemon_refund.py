"""The external write path on the production path: refund requests picked up by the real daemon, the
refund made through the local payments API from a run worker, and a crash between the API call and
its record (the refund applied, its answer held, then the daemon and its workers SIGKILLed) finished
by the daemon's own recovery sweeper: the ledger row reconciled from a read-back by idempotency key,
exactly one refund in the service's own state, and no person touching the database."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from agent_pipelines.framework.intents import IntentStore, record_intent_id
from agent_pipelines.framework.ledger import WriteStatus
from agent_pipelines.framework.tables import writes
from agent_pipelines.services.harness import Served, serve
from agent_pipelines.services.payments import payments_app
from agent_pipelines.workflows.refund import demo_data
from resources.refunds import refund_requests
from tests.daemon.harness import REPO, Stack, stack, wait_until
from tests.support import SUMMARY

pytestmark = [pytest.mark.postgres, pytest.mark.pg_leg]

LEASE_S = 15  # the claim lease: the sweeper takes over a crashed intent this long after its last heartbeat


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Served]]:
    with serve(payments_app()) as payments:
        payments.admin("/_admin/orders", demo_data.orders())
        state = tmp_path_factory.mktemp("daemon_refund") / "state"
        with stack(REPO / "deploy" / "dagster.postgres.yaml", state, n_pos=1,
                   extra_env={"AGENT_PIPELINES_LEASE_SECONDS": str(LEASE_S),
                              "AGENT_PIPELINES_PAYMENTS_URL": payments.base_url}) as s:
            s.start_daemon()
            try:
                yield s, payments
            finally:
                print(f"--- daemon log tail ---\n{s.log_tail('daemon')}")


def add_request(s: Stack, request_id: str, order_id: str, text: str) -> str:
    with s.project.db.begin() as conn:
        conn.execute(refund_requests.insert().values(
            request_id=request_id, version=1, order_id=order_id, customer_email="c@mail.example", text=text,
            submitted_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC)))
    return record_intent_id("refund", request_id, 1)


def state(s: Stack, intent_id: str) -> str | None:
    found = IntentStore(s.project.db).get(intent_id)
    return found.state if found else None


def refund_rows(s: Stack, intent_id: str) -> list[dict[str, Any]]:
    with s.project.db.connect() as conn:
        return [dict(r) for r in conn.execute(select(writes).where(writes.c.intent_id == intent_id,
                                                                   writes.c.action == "refund")).mappings()]


def service_refunds(payments: Served, order_id: str) -> list[dict[str, Any]]:
    return httpx.get(f"{payments.base_url}/orders/{order_id}/refunds", timeout=10).json()["data"]


def test_the_daemon_refunds_once_and_its_sweeper_reconciles_a_refund_whose_answer_was_lost(deployment):
    s, payments = deployment
    t0 = time.monotonic()
    # 1. The daemon path, no fault: the sensor, a run worker, the payments API, a committed row.
    first = add_request(s, "R-daemon-1", "ORD-1001", "The mug arrived broken.")
    wait_until("the daemon to complete the first refund", lambda: state(s, first) == "completed", timeout_s=150,
               every_s=0.5)
    [row] = refund_rows(s, first)
    assert row["status"] == WriteStatus.COMMITTED and len(service_refunds(payments, "ORD-1001")) == 1

    # 2. The crash: the service applies the next refund and holds its answer; while the run worker
    # waits for it, the daemon, its code server and its run workers are SIGKILLed.
    before = payments.effects()["effects"]
    payments.faults(after_effect="lose", after_effect_count=1)
    crashed = add_request(s, "R-daemon-2", "ORD-1002", "The kettle arrived broken.")
    wait_until("the refund to land in the service", lambda: payments.effects()["effects"] == before + 1,
               timeout_s=150, every_s=0.1)
    s.kill_daemon()
    [pending] = refund_rows(s, crashed)
    assert pending["status"] == WriteStatus.PENDING  # the call was made, its answer never recorded
    wait_until("the held answer to be dropped", lambda: payments.effects()["in_flight"] == 0, timeout_s=90)

    # 3. A new daemon: its recovery sweeper (after the lease) resumes the intent at commit, reads the
    # refund back by its idempotency key and records it: no second call, no person.
    s.start_daemon()
    wait_until("the sweeper to complete the crashed refund", lambda: state(s, crashed) == "completed",
               timeout_s=240, every_s=0.5)
    [row] = refund_rows(s, crashed)
    ev = row["evidence"]
    assert row["status"] == WriteStatus.RECONCILED
    assert (ev["via"], ev["by"], ev["when"], ev["decision"]) == ("read_back", "idempotency_key", "recovery", "committed")
    [refund] = [r for r in service_refunds(payments, "ORD-1002") if r["reference"] == "R-daemon-2"]
    assert row["target"] == f"payments.refunds:{refund['id']}"
    fx = payments.effects()
    assert (fx["effects"], fx["duplicates"]) == (before + 1, 0)  # counted by the service itself
    st = s.project.status()
    assert (st.duplicate_writes, st.stranded, st.partial_commits) == (0, 0, 0)
    SUMMARY.append(f"daemon refund crash: refunds_in_service={fx['effects']} duplicates={fx['duplicates']} "
                   f"crashed_row={row['status']} seconds={time.monotonic() - t0:.1f}")
