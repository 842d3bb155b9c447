"""Great Expectations suites of CRM hygiene, as code: VERIFY runs the post-write suite on each updated
opportunity as read back from the CRM; the asset check runs the table suite over every opportunity."""

from typing import Any

import pandas as pd

from agent_pipelines.framework.quality import SuiteCheck, SuiteResult, run_checks
from agent_pipelines.workflows.crm_hygiene.models import MAX_NEXT_STEP, STAGES

OPPORTUNITY_POST_WRITE = "crm_opportunities.post_write"
OPPORTUNITIES_TABLE = "crm_opportunities.table"
ASSET = "sor/crm.opportunities"
FIELDS = ("stage", "next_step", "owner", "amount_cents")


def _post_write(gxe: Any) -> list[Any]:
    # Row-level, one row per updated opportunity, so a batch validates as one frame.
    return [
        gxe.ExpectColumnValuesToBeInSet(column="stage", value_set=list(STAGES)),
        *(gxe.ExpectColumnPairValuesToBeEqual(column_A=f, column_B=f"expected_{f}") for f in FIELDS),
        # exactly one update was made from the version the proposal was based on: ours
        gxe.ExpectColumnValuesToBeBetween(column="updates_from_base", min_value=1, max_value=1),
    ]


def _table(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeInSet(column="stage", value_set=list(STAGES)),
        gxe.ExpectColumnValuesToBeBetween(column="version", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="amount_cents", min_value=0),
        gxe.ExpectColumnValueLengthsToBeBetween(column="next_step", max_value=MAX_NEXT_STEP),
    ]


def post_write_check(read: dict[str, Any], expected: dict[str, Any], updates_from_base: int) -> SuiteCheck:
    """`read`: the opportunity's fields as the CRM holds them after our update; `expected`: what they
    should be (our values where we changed them, the values READ saw elsewhere). Compared as text, so a
    missing value compares equal to a missing value."""
    row: dict[str, Any] = {f: str(read.get(f)) for f in FIELDS} | {f"expected_{f}": str(expected.get(f)) for f in FIELDS}
    row["stage"] = read.get("stage")
    row["updates_from_base"] = updates_from_base
    return SuiteCheck(OPPORTUNITY_POST_WRITE, ASSET, _post_write, [row])


def table_check(opportunities: list[dict[str, Any]]) -> SuiteResult:
    """Every opportunity the CRM holds (the asset check)."""
    frame = pd.DataFrame(opportunities, columns=["id", "stage", "next_step", "owner", "amount_cents", "version"])
    return run_checks([SuiteCheck(OPPORTUNITIES_TABLE, ASSET, _table, frame)])[0]
