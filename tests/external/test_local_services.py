"""The local services as the demo and `agent-pipelines services` run them: started when their URL is not
set, reused when it is, seeded through their admin endpoints, read through `read_json`."""

import os
import subprocess
import sys

import httpx
import pytest

from agent_pipelines.framework.external import read_json, service_url, service_url_var
from agent_pipelines.framework.tools import PermanentToolError
from agent_pipelines.services.local import local_services, seed


def test_unset_services_start_for_the_block_and_their_urls_go_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("payments", "crm"):
        monkeypatch.delenv(service_url_var(name), raising=False)
    with local_services() as urls:
        assert set(urls) == {"payments", "crm"}
        assert os.environ[service_url_var("payments")] == urls["payments"]
        seed("payments", "/_admin/orders", [{"id": "O-1", "captured_cents": 5000}])
        assert read_json("payments", "/orders/O-1") == {"id": "O-1", "captured_cents": 5000, "currency": "USD",
                                                         "refunded_cents": 0}
        assert read_json("payments", "/orders/O-404") is None  # a 404 is "not there", not an error
    assert service_url_var("payments") not in os.environ
    with pytest.raises(PermanentToolError, match="AGENT_PIPELINES_PAYMENTS_URL is not set"):
        read_json("payments", "/orders/O-1")


def test_a_configured_service_is_used_not_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(service_url_var("crm"), raising=False)
    with local_services(names=("payments",)) as outer:
        with local_services(names=("payments",)) as inner:
            assert inner == outer
        assert os.environ[service_url_var("payments")] == outer["payments"]  # the inner block left it alone


def test_the_services_command_serves_both_and_prints_their_variables() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "agent_pipelines.cli", "services", "--payments-port", "0",
                             "--crm-port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(2)]  # type: ignore[union-attr]
        env = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        assert set(env) == {"AGENT_PIPELINES_PAYMENTS_URL", "AGENT_PIPELINES_CRM_URL"}
        os.environ.update(env)
        try:
            assert read_json("crm", "/opportunities") == {"data": []}
        finally:
            for var in env:
                os.environ.pop(var)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_stand_in_with_a_state_folder_keeps_its_records_for_the_next_command(tmp_path, monkeypatch) -> None:
    for name in ("payments", "crm"):
        monkeypatch.delenv(service_url_var(name), raising=False)
    with local_services(tmp_path):
        seed("payments", "/_admin/orders", [{"id": "O-7", "captured_cents": 9000}])
        seed("crm", "/_admin/opportunities", [{"id": "OP-7", "stage": "qualify", "next_step": "call",
                                               "owner": "ana", "amount_cents": 100}])
        url = service_url("payments")
        for key in ("k-1", "k-1", "k-2"):  # the second is a replay of the first: one refund
            answer = httpx.post(f"{url}/refunds", json={"order_id": "O-7", "amount_cents": 1000, "reason": "damaged"},
                                headers={"Idempotency-Key": key})
            assert answer.status_code in (200, 201), answer.text
    with local_services(tmp_path):  # a new process's stand-in, on the same folder
        assert read_json("payments", "/orders/O-7")["refunded_cents"] == 2000
        refunds = read_json("payments", "/orders/O-7/refunds")["data"]
        assert sorted(r["id"] for r in refunds) == ["re_000001", "re_000002"]
        assert read_json("crm", "/opportunities/OP-7")["stage"] == "qualify"
        answer = httpx.post(f"{service_url('payments')}/refunds", headers={"Idempotency-Key": "k-3"},
                            json={"order_id": "O-7", "amount_cents": 1000, "reason": "damaged"})
        assert answer.json()["id"] == "re_000003"  # ids go on from the saved ones, never reused
