"""A writer process for the crash tests: one external write through the gateway (as a commit step
would make it), in its own process so the test can SIGKILL it after the service applied the effect.

    python -m tests.external.worker DB_URL TOOL INTENT_ID PARAMS_JSON

The services' addresses come from AGENT_PIPELINES_<SERVICE>_URL, like any run's."""

import json
import sys

from agent_pipelines.framework.db import Database
from agent_pipelines.services.clients import crm_task_tool, crm_update_tool, refund_tool
from tests.external.conftest import gateway

TOOLS = {"create_refund": refund_tool, "update_opportunity": crm_update_tool, "create_task": crm_task_tool}


def main(argv: list[str]) -> int:
    db_url, tool, intent_id, params = argv
    db = Database(db_url)
    receipt = gateway(db, [TOOLS[tool]()], intent_id).write(tool, json.loads(params), action="apply")
    print(receipt.model_dump_json())  # reached only when nobody killed us
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
