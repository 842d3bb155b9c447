"""JSON and CSV invoices into a draft (parsing/common.py)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from agent_pipelines.workflows.invoice_matching.parsing.common import (_collect, _Draft, _IGNORED_LABELS,
                                                                       _INVOICE_FIELDS, _INVOICE_REV, _is_line_header,
                                                                       _LINE_FIELDS, _LINE_REV, _LINES_KEYS, _norm,
                                                                       _Reject, _spend, _TOTAL_LABELS, _WRAPPER_KEYS)
from agent_pipelines.workflows.invoice_matching.parsing.values import _clip, _json_type


# -- JSON ----------------------------------------------------------------------------------------------
def _from_json(text: str) -> _Draft:
    try:
        data = json.loads(text, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise _Reject(f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise _Reject("not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise _Reject(f"JSON must be an object with invoice fields, not {_json_type(data)}")
    data = _unwrap(data)
    draft = _Draft(fields=_collect(data.items(), _INVOICE_FIELDS))
    for key, value in data.items():
        if _norm(str(key)) not in _LINES_KEYS or value is None:
            continue
        if not isinstance(value, list):
            raise _Reject(f"'{key}' must be a list of line items, not {_json_type(value)}")
        for i, item in enumerate(value, start=1):
            if not isinstance(item, dict):
                raise _Reject(f"line {i} must be an object, not {_json_type(item)}")
            draft.add_line(f"line {i}", _collect(item.items(), _LINE_FIELDS))
        break
    return draft


def _json_int(digits: str) -> int | str:
    """A JSON integer; one too long for int() stays its digits (rejected or kept as text later)."""
    return int(digits) if len(digits) <= 40 else digits


def _unwrap(data: dict[str, Any]) -> dict[str, Any]:
    """{"invoice": {...}} (or "data"/"document") -> the inner object, outer keys as fallbacks."""
    for key, value in data.items():
        if _norm(str(key)) in _WRAPPER_KEYS and isinstance(value, dict):
            outer = {k: v for k, v in data.items() if k != key}
            return {**outer, **value}
    return data


# -- CSV -----------------------------------------------------------------------------------------------
def _from_csv(text: str) -> _Draft:
    try:
        delimiter = _sniff_delimiter(text)
        rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)]
    except csv.Error as exc:
        raise _Reject(f"not valid CSV ({exc})") from None

    # Skip title rows ("ACME INVOICE") above the header: rows with a single, unrecognised cell.
    start = 0
    while start < len(rows) and start < 5:
        cells = [c for c in rows[start] if c]
        if cells and not (len(cells) == 1 and _norm(cells[0]) not in _INVOICE_REV):
            break
        start += 1
    if start >= len(rows) or not any(rows[start]):
        raise _Reject("no recognisable header row (the file has no rows with several columns)")

    header = rows[start]
    cells = [c for c in header if c]
    normed = [_norm(c) for c in cells]
    known = sum(1 for n in normed if n in _INVOICE_REV or n in _LINE_REV)
    if len(cells) == 2 and normed[0] in ("field", "key", "name", "attribute", "property") and normed[1] == "value":
        return _csv_key_value(rows, start + 1)
    if known >= 2 and (len(cells) >= 3 or known == len(cells)):
        draft = _Draft()
        _csv_table(rows, start, draft, invoice_columns=True)
        return draft
    if normed and normed[0] in _INVOICE_REV:
        return _csv_key_value(rows, start)
    shown = (",".join(header))[:80]
    raise _Reject(
        f"no recognisable header row (first row is '{shown}'); expected columns such as "
        "invoice_number, description, qty, unit_price, amount, or a two-column field,value sheet"
    )


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first rows into the most fields (ties: ',' then ';').
    Counting over several rows keeps "total;1.234,56" from being read as comma-separated."""
    sample = [line for line in text.splitlines() if line.strip()][:20]
    best, best_score = ",", -1
    for delimiter in (",", ";", "\t", "|"):
        score = sum(len(row) for row in csv.reader(sample, delimiter=delimiter))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _csv_key_value(rows: list[list[str]], start: int) -> _Draft:
    """Shape (b): field,value rows, optionally followed by a line-item table with its own header."""
    pairs: list[tuple[str, str]] = []
    draft = _Draft()
    for i in range(start, len(rows)):
        cells = rows[i]
        if not any(cells):
            continue
        if len([c for c in cells if c]) >= 2 and _is_line_header(cells):
            _csv_table(rows, i, draft, invoice_columns=False)
            break
        values = [c for c in cells[1:] if c]
        pairs.append((cells[0], values[0] if values else ""))
    # An explicit "Total,..." pair beats a total row under the line table.
    draft.fields = {**draft.fields, **_collect(pairs, _INVOICE_FIELDS)}
    return draft


def _csv_table(rows: list[list[str]], header_at: int, draft: _Draft, *, invoice_columns: bool) -> None:
    """Shape (a), or the line table of shape (b): one row per line item. Invoice-level columns
    (repeated on every row) are read from the first row that has them."""
    header = [_norm(c) for c in rows[header_at]]
    data = [(i, row) for i, row in enumerate(rows[header_at + 1:], start=header_at + 2) if any(row)]

    def cell(row: list[str], col: int) -> str:
        return row[col] if col < len(row) else ""

    # "amount" and "total" name either a line's amount or the invoice total; decide from the table:
    # invoice total when there are no line columns, when a "line total" column exists, or (for
    # "total") when every row repeats the same value; otherwise the line amount.
    has_line_cols = any(n in _LINE_REV and n not in _INVOICE_REV for n in header)
    explicit_line_amount = any(_LINE_REV.get(n) == "amount" and n not in _INVOICE_REV for n in header)
    line_cols: dict[str, int] = {}
    inv_cols: dict[str, int] = {}
    for col, n in enumerate(header):
        line_field, inv_field = _LINE_REV.get(n), _INVOICE_REV.get(n)
        if line_field and inv_field:
            constant = len({cell(r, col) for _, r in data if cell(r, col)}) <= 1
            if invoice_columns and (not has_line_cols or explicit_line_amount or (n == "total" and constant)):
                _claim(inv_cols, inv_field, col, header, _INVOICE_FIELDS)
            else:
                _claim(line_cols, line_field, col, header, _LINE_FIELDS)
        elif line_field:
            _claim(line_cols, line_field, col, header, _LINE_FIELDS)
        elif inv_field and invoice_columns:
            _claim(inv_cols, inv_field, col, header, _INVOICE_FIELDS)

    items: list[tuple[int, list[str]]] = []
    for rownum, row in data:
        _spend()
        first = next((c for c in row if c), "")
        label = _norm(first)
        priced = any(cell(row, line_cols[k]) for k in ("quantity", "unit_price") if k in line_cols)
        if label in _TOTAL_LABELS and not priced:
            # A "Total,,,65.00" row under the table.
            amount = next(c for c in reversed(row) if c)
            if amount != first:
                draft.fields.setdefault("total", amount)
        elif not (label in _IGNORED_LABELS and not priced):  # "Subtotal" rows repeat the lines
            items.append((rownum, row))

    for name, col in inv_cols.items():
        values = [cell(row, col) for _, row in items if cell(row, col)]
        if not values:
            continue
        draft.fields.setdefault(name, values[0])
        if len(set(values)) > 1:
            draft.warnings.append(
                f"column '{_clip(rows[header_at][col])}' has different values on different rows; "
                f"using '{_clip(values[0])}'"
            )

    for rownum, row in items:
        raw = {name: cell(row, col) for name, col in line_cols.items() if cell(row, col)}
        if raw:
            draft.add_line(f"row {rownum}", raw)


def _claim(taken: dict[str, int], name: str, col: int, header: list[str],
           fields: Mapping[str, tuple[str, ...]]) -> None:
    """Assign a column to a field unless a higher-priority synonym already holds it."""
    if name not in taken:
        taken[name] = col
        return
    rank = fields[name].index
    if rank(header[col]) < rank(header[taken[name]]):
        taken[name] = col


