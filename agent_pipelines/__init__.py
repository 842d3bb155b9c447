"""agent_pipelines: a production runtime for LLM agent workflows on Dagster."""
