"""Great Expectations suites as code, one function per suite. The workflow's VALIDATE and VERIFY steps
and the asset checks on the tables call the same functions, so the gate and the check cannot drift."""

from typing import Any

import pandas as pd

from agent_pipelines.framework.quality import OWNER, Rows, SuiteCheck, SuiteResult, run_checks

INVOICE_LINES_PRE_WRITE = "staged_invoice_lines.pre_write"
STAGED_INVOICES_POST_WRITE = "staged_invoices.post_write"


def _invoice_lines_pre_write(gxe: Any) -> list[Any]:
    return [
        # Row-level, so a batch of invoices validates as one frame: the line count is a column, and a
        # line number is unique within its invoice (OWNER, the intent), not across the batch.
        gxe.ExpectColumnValuesToBeBetween(column="invoice_line_count", min_value=1, max_value=500),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[OWNER, "line_no"]),
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


def _invoice_lines_derived(lines: pd.DataFrame) -> pd.DataFrame:
    """On every invoice's lines at once: each line's rounding delta, each invoice's line count."""
    return lines.assign(amount_delta_cents=(lines["amount_cents"] - (lines["quantity"] * lines["unit_price_cents"]).round()).abs(),
                        invoice_line_count=lines.groupby(OWNER)[OWNER].transform("size"))


def invoice_lines_pre_write(lines: Rows) -> SuiteCheck:
    """One invoice's billed lines (description, quantity, unit_price_cents, amount_cents, line_no), before
    anything is written (the framework runs it, batched)."""
    return SuiteCheck(INVOICE_LINES_PRE_WRITE, "sor/staged_invoice_lines", _invoice_lines_pre_write, lines,
                      _invoice_lines_derived)


def staged_invoices_post_write_check(invoices: pd.DataFrame | Rows) -> SuiteCheck:
    """`invoices`: staged invoices joined with payment_amount_cents and line_count (see assets.checks)."""
    return SuiteCheck(STAGED_INVOICES_POST_WRITE, "sor/staged_invoices", _staged_invoices_post_write, invoices)


def staged_invoices_post_write(invoices: pd.DataFrame) -> SuiteResult:
    """The whole table at once (the asset check)."""
    return run_checks([staged_invoices_post_write_check(invoices)])[0]


# -- incident_triage ------------------------------------------------------------------------------------
INCIDENT_PRE_WRITE = "incidents.pre_write"
INCIDENTS_POST_WRITE = "incidents.post_write"
_SEVERITY_SET = ["sev1", "sev2", "sev3", "sev4"]


def _incident_pre_write(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="severity", value_set=_SEVERITY_SET),
        gxe.ExpectColumnValuesToNotBeNull(column="team"),
        gxe.ExpectColumnValuesToBeBetween(column="summary_chars", min_value=1, max_value=500),
        # the summary quotes nothing that addresses an agent (log lines are untrusted text)
        gxe.ExpectColumnValuesToBeBetween(column="summary_instruction_like", min_value=0, max_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="error_rate", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="availability", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="p99_latency_ms", min_value=0),
    ]


def _incidents_post_write(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeUnique(column="incident_id"),
        gxe.ExpectColumnValuesToBeUnique(column="created_by_intent"),
        gxe.ExpectColumnValuesToBeInSet(column="severity", value_set=_SEVERITY_SET),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["open", "resolved"]),
        gxe.ExpectColumnValuesToNotBeNull(column="team"),
        gxe.ExpectColumnValuesToBeBetween(column="summary_instruction_like", min_value=0, max_value=0),
        # at most one open incident per fingerprint (resolved ones have no open_fingerprint)
        gxe.ExpectColumnValuesToBeUnique(column="open_fingerprint"),
    ]


def _instruction_like_count(summaries: pd.Series) -> pd.Series:
    from agent_pipelines.framework.untrusted import instruction_like

    return summaries.fillna("").map(lambda s: len(instruction_like(s)))


def _incident_derived(planned: pd.DataFrame) -> pd.DataFrame:
    return planned.assign(summary_chars=planned["summary"].fillna("").str.len(),
                          summary_instruction_like=_instruction_like_count(planned["summary"]))


def incident_pre_write(planned: Rows) -> SuiteCheck:
    """The incident one alert would open (severity, team, summary) with the metric figures it rests on."""
    return SuiteCheck(INCIDENT_PRE_WRITE, "sor/incidents", _incident_pre_write, planned, _incident_derived)


def _incidents_derived(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(summary_instruction_like=_instruction_like_count(rows["summary"]),
                       open_fingerprint=rows["fingerprint"].where(rows["status"] == "open"))


def incidents_post_write_check(rows: pd.DataFrame | Rows) -> SuiteCheck:
    """`rows`: incidents as stored (incident_id, created_by_intent, severity, status, team, summary, fingerprint)."""
    return SuiteCheck(INCIDENTS_POST_WRITE, "sor/incidents", _incidents_post_write, rows, _incidents_derived)


def incidents_post_write(rows: pd.DataFrame) -> SuiteResult:
    """The whole table at once (the asset check)."""
    return run_checks([incidents_post_write_check(rows)])[0]
# -- refund (the payments API is the system of record; frames are built from what it returns) ----------
REFUND_PRE_WRITE = "refund.pre_write"
PAYMENTS_REFUNDS_POST_WRITE = "payments_refunds.post_write"


def _refund_pre_write(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeBetween(column="amount_cents", min_value=1, max_value=10_000_000),
        # never more than is left on the order, and never more left than was captured
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="remaining_cents", column_B="amount_cents",
                                                    or_equal=True),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="captured_cents", column_B="remaining_cents",
                                                    or_equal=True),
    ]


def _payments_refunds_post_write(gxe: Any) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="refund_id"),
        gxe.ExpectColumnValuesToBeUnique(column="refund_id"),
        # one refund per request (its reference) and order: a second one is a duplicate refund
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["order_id", "reference"]),
        gxe.ExpectColumnValuesToBeBetween(column="amount_cents", min_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["succeeded"]),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="captured_cents", column_B="refunded_cents",
                                                    or_equal=True),
    ]


def refund_pre_write(amount_cents: int, remaining_cents: int, captured_cents: int) -> SuiteCheck:
    """One proposed refund against its order, before anything is written (the framework runs it, batched)."""
    row = {"amount_cents": amount_cents, "remaining_cents": remaining_cents, "captured_cents": captured_cents}
    return SuiteCheck(REFUND_PRE_WRITE, "payments/refunds", _refund_pre_write, [row])


def payments_refunds_post_write_check(refunds: pd.DataFrame | Rows) -> SuiteCheck:
    """`refunds`: refund_id, order_id, reference, amount_cents, status, and the order's captured_cents and
    refunded_cents, as read back from the payments API (see assets/refunds.py)."""
    return SuiteCheck(PAYMENTS_REFUNDS_POST_WRITE, "payments/refunds", _payments_refunds_post_write, refunds)


def payments_refunds_post_write(refunds: pd.DataFrame) -> SuiteResult:
    return run_checks([payments_refunds_post_write_check(refunds)])[0]
