"""batch_executor() picks the executor from the environment; no broker is needed to build a job with it."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from agent_pipelines.framework import executors

REPO = Path(__file__).resolve().parents[2]


@dg.op
def _noop() -> None:
    pass


def _job(executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    @dg.job(executor_def=executor)
    def probe() -> None:
        _noop()

    return probe


@pytest.mark.parametrize("value", [None, "", "in_process", "IN_PROCESS"])
def test_in_process_by_default(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(executors.EXECUTOR_ENV, raising=False)
    else:
        monkeypatch.setenv(executors.EXECUTOR_ENV, value)
    assert executors.batch_executor() is dg.in_process_executor


def test_celery_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(executors.EXECUTOR_ENV, "celery")
    monkeypatch.setenv(executors.BROKER_ENV, "pyamqp://u:p@broker.invalid:5672//")
    monkeypatch.delenv(executors.BACKEND_ENV, raising=False)
    monkeypatch.setenv(executors.QUEUE_ENV, "ap_batch")
    executor = executors.batch_executor()
    assert executor.name == "agent_pipelines_celery"
    # the configured values satisfy dagster-celery's schema: a job builds and its run config resolves
    resolved = dg.validate_run_config(_job(executor), {})["execution"]["agent_pipelines_celery"]
    assert resolved["broker"] == "pyamqp://u:p@broker.invalid:5672//"
    assert resolved["backend"] == executors.DEFAULT_BACKEND
    assert resolved["config_source"] == {"task_default_queue": "ap_batch", **executors.WORKER_SETTINGS}


def test_worker_yaml_carries_the_executor_s_worker_settings() -> None:
    """Late acks only work if the WORKERS have them: deploy/celery.worker.yaml must not drift from the code."""
    worker = yaml.safe_load((REPO / "deploy" / "celery.worker.yaml").read_text())["execution"]["config"]
    assert worker["config_source"] == executors.WORKER_SETTINGS
    assert worker["broker"] == {"env": executors.BROKER_ENV} and worker["backend"] == {"env": executors.BACKEND_ENV}


def test_unknown_executor_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(executors.EXECUTOR_ENV, "celry")
    with pytest.raises(ValueError, match="celry"):
        executors.batch_executor()
