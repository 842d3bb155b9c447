"""Which Dagster executor the batch jobs use (placeholder until the Celery executor is wired)."""

import dagster as dg


def batch_executor() -> dg.ExecutorDefinition:
    return dg.in_process_executor
