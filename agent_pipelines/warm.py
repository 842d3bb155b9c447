"""What a warm run worker imports once, at start (deploy/dagster.warm.yaml, deploy/celery.runs.yaml: the
worker is started with `-i agent_pipelines.warm`).

Celery imports this module in the worker's parent process before it forks its pool, so every pool
process starts with Dagster, this code location, the model client and Great Expectations already
imported: a run then pays none of the ~4.7 s those imports cost a new interpreter (measured by
scripts/bench_latency.py, "cold worker imports"). Imports only; nothing runs."""

# In the order a run needs them (scripts/bench_latency.py times each of these imports in a new interpreter).
import agent_pipelines.definitions  # noqa: F401 - the code location every run's job is loaded from
import instructor  # noqa: F401 - the propose step's client
import openai  # noqa: F401
import openai.resources  # noqa: F401 - else imported by the first proposal's client (~0.5 s)
from instructor import from_openai  # noqa: F401 - instructor loads its client factory when first asked for
import great_expectations  # noqa: F401 - the validate and verify steps' suites
