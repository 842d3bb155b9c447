"""Alembic environment: runs on the connection handed in by agent_pipelines.framework.db.migrate."""

from alembic import context

from agent_pipelines.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` CLI use: build an engine from the configured URL
    from agent_pipelines.framework.db import make_engine
    from agent_pipelines.settings import Settings

    connection = make_engine(Settings.from_env().db_url).connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
