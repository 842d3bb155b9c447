"""The complete schema Alembic migrates: framework tables plus the systems of record."""

import resources.access  # noqa: F401  (registers the system-of-record tables on `metadata`)
import resources.refunds  # noqa: F401
import resources.system_of_record  # noqa: F401
import resources.tickets  # noqa: F401
from agent_pipelines.framework.tables import metadata

__all__ = ["metadata"]
