"""Which Dagster executor runs the steps of a batch job (`<workflow>__batch`).

By default a batch runs in one process (`in_process_executor`): nothing to deploy, and the demo and the
tests need no broker. With AGENT_PIPELINES_EXECUTOR=celery every step (so each DynamicOutput chunk's op
chain) becomes a Celery task that any worker listening on the queue may take: scale-out across
processes and machines. See deploy/README.md for the worker side.

The choice is read from the environment when the job is built, and a Celery task rebuilds the job in
the worker from its code pointer: orchestrator and workers must see the same AGENT_PIPELINES_* values.
Importing this module imports neither Celery nor dagster-celery."""

import os

import dagster as dg

EXECUTOR_ENV = "AGENT_PIPELINES_EXECUTOR"
BROKER_ENV = "AGENT_PIPELINES_CELERY_BROKER"
BACKEND_ENV = "AGENT_PIPELINES_CELERY_BACKEND"
QUEUE_ENV = "AGENT_PIPELINES_CELERY_QUEUE"

DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
# rpc:// sends each task's result straight back to the run worker that submitted it over the broker:
# no result store to run or clean up. The results are the step's serialized Dagster events.
DEFAULT_BACKEND = "rpc://"
# dagster-celery's own default queue, so a stock `dagster-celery worker start` serves us out of the box.
DEFAULT_QUEUE = "dagster"
# Celery settings that only take effect IN THE WORKERS (deploy/celery.worker.yaml carries the same, and
# tests/celery checks the two agree). By default a worker acknowledges a task when it starts it, so a
# worker that dies mid-step (SIGKILL, OOM, lost machine) loses that step and the run waits for its
# result forever, deaf even to termination. Acknowledging after the step instead, and requeueing
# when the worker is lost, hands the step to another worker: at-least-once steps, which our steps
# tolerate (intent claims and the ledger make a repeated step harmless). Also means a busy worker
# holds no prefetched step back from an idle one. The price: a step that itself kills its worker
# (e.g. OOM every time) is redelivered again and again; bound batch runs with `dagster/max_runtime`.
WORKER_SETTINGS: dict[str, object] = {"task_acks_late": True, "task_reject_on_worker_lost": True}


def batch_executor() -> dg.ExecutorDefinition:
    """`in_process_executor`, or with AGENT_PIPELINES_EXECUTOR=celery the Celery executor configured
    from AGENT_PIPELINES_CELERY_BROKER / _BACKEND / _QUEUE. Any other value raises: a typo must not
    quietly run a large batch in one process."""
    choice = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if choice in ("", "in_process"):
        return dg.in_process_executor
    if choice != "celery":
        raise ValueError(f"{EXECUTOR_ENV}={choice!r}: expected 'in_process' or 'celery'")

    # Imported here: only Celery deployments load Celery, and the in-process default never needs it.
    from dagster_celery import celery_executor

    queue = os.environ.get(QUEUE_ENV) or DEFAULT_QUEUE
    return celery_executor.configured(
        {
            "broker": os.environ.get(BROKER_ENV) or DEFAULT_BROKER,
            "backend": os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND,
            # dagster-celery sends each step to its `dagster-celery/queue` tag, else to the app's
            # task_default_queue: setting the latter routes every step of the job without tagging ops.
            # Workers must listen on it (`-Q <queue>`).
            "config_source": {"task_default_queue": queue, **WORKER_SETTINGS},
        },
        name="agent_pipelines_celery",
    )
