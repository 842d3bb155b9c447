"""Great Expectations suites as code, one function per suite. The workflow's VALIDATE and VERIFY steps
and the asset checks on the tables call the same functions, so the gate and the check cannot drift."""

from typing import Any

import pandas as pd

from agent_pipelines.framework.quality import SuiteResult, run_suite

INVOICE_LINES_PRE_WRITE = "staged_invoice_lines.pre_write"
STAGED_INVOICES_POST_WRITE = "staged_invoices.post_write"


def _invoice_lines_pre_write(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=500),
        gxe.ExpectColumnValuesToBeUnique(column="line_no"),
        gxe.ExpectColumnValuesToNotBeNull(column="description"),
        gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=0, strict_min=True, max_value=1_000_000),
        gxe.ExpectColumnValuesToBeBetween(column="unit_price_cents", min_value=0, max_value=10_000_000_000),
        gxe.ExpectColumnValuesToBeBetween(column="amount_cents", min_value=0, max_value=100_000_000_000),
        # a line's amount agrees with quantity x unit price to the cent (rounding)
        gxe.ExpectColumnValuesToBeBetween(column="amount_delta_cents", min_value=0, max_value=1),
    ]


def _staged_invoices_post_write(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="invoice_id"),
        gxe.ExpectColumnValuesToBeUnique(column="invoice_id"),
        gxe.ExpectColumnValuesToBeUnique(column="intent_id"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["vendor_id", "invoice_number"]),
        gxe.ExpectColumnValuesToBeBetween(column="amount_cents", min_value=1),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="amount_cents", column_B="payable_cents", or_equal=True),
        gxe.ExpectColumnValuesToNotBeNull(column="payment_amount_cents"),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="payable_cents", column_B="payment_amount_cents"),
        gxe.ExpectColumnValuesToBeBetween(column="line_count", min_value=1),
    ]


def invoice_lines_pre_write(lines: pd.DataFrame) -> SuiteResult:
    frame = lines.assign(amount_delta_cents=(lines["amount_cents"] - (lines["quantity"] * lines["unit_price_cents"]).round()).abs())
    return run_suite(INVOICE_LINES_PRE_WRITE, "sor/staged_invoice_lines", _invoice_lines_pre_write, frame)


def staged_invoices_post_write(invoices: pd.DataFrame) -> SuiteResult:
    """`invoices`: staged invoices joined with payment_amount_cents and line_count (see assets.checks)."""
    return run_suite(STAGED_INVOICES_POST_WRITE, "sor/staged_invoices", _staged_invoices_post_write, invoices)
