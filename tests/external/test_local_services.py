"""The local services as the demo and `agent-pipelines services` run them: started when their URL is not
set, reused when it is, seeded through their admin endpoints, read through `read_json`."""

import os
import subprocess
import sys

import pytest

from agent_pipelines.framework.external import read_json, service_url_var
from agent_pipelines.framework.gateway import PermanentToolError
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
    with local_services(("payments",)) as outer:
        with local_services(("payments",)) as inner:
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
