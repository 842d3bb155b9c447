"""Batch steps on Dagster's Celery executor: a local worker cluster (harness.py) and the stand-in job."""
