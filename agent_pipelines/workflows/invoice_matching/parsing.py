"""Parse a received invoice file (JSON, CSV or plain text) into an InvoiceIntake.

Pure functions: bytes in, a typed intake (or a ParseError a person can act on) out. The parser is
tolerant of how vendors write invoices (key names, amount and date formats, CSV shapes, e-mail
text) and strict about what it cannot read: it never guesses an amount. Fields it cannot find
(invoice number, PO number, vendor) stay None; the workflow's validation step asks a person.

Conventions worth knowing:
- Keys and labels match case-insensitively with spaces, underscores, hyphens and dots ignored;
  "#" reads as "number" ("Invoice #" == "invoice_number", "PO #" == "po_number").
- Amounts: "1234.56", "1,234.56", "$1,234.56", "EUR 1.234,56", "1 234,56", "USD 99". When both "."
  and "," occur the last one is the decimal separator. A single separator followed by exactly three
  digits is read the US way ("1,234" is 1234, "1.234" is 1.234). Cents round half up.
- Dates NN/NN/YYYY: day/month when the first number is > 12, otherwise month/day (US style), so
  "03/11/2026" is March 11. Dotted dates (03.11.2026) are always day.month.year.
- Limits (hostile input ends as a ParseError, never another exception or a stall): every amount and
  quantity goes through one checked conversion (`_number`: finite, at most 18 significant digits, below
  10**15; amounts at most MAX_CENTS, quantities at most MAX_QUANTITY); every text field has a length
  limit (ids 64, vendor 200, descriptions 500, dates/currency 100, numbers written as text 64; the memo
  is cut to 4000 with a warning); at most MAX_LINES line items. No regular expression backtracks over
  a run of spaces, so parsing time is linear in the file size.
- Time budget: a file may use at most PARSE_BUDGET_S seconds of CPU (the thread's, so a busy machine does
  not count against it); the sensor parses inside its tick, so a file that somehow takes longer ends as a
  ParseError instead of holding up the files behind it. Linear parsing of a maximal file takes ~0.2 s.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from email.utils import parsedate_to_datetime
from pathlib import PurePath
from typing import Any, Literal

from agent_pipelines.workflows.invoice_matching.models import InvoiceIntake, InvoiceLine

MAX_BYTES = 256 * 1024
MAX_MEMO_CHARS = 4000
MAX_ID_CHARS = 64  # staged_invoices.invoice_number is String(64); longer is not an identifier
MAX_CENTS = 10**14  # one trillion: anything above is a misread, not an invoice
MAX_DIGITS = 18  # significant digits of any number read (amounts in cents stay far inside int64)
MAX_NUMBER_CHARS = 64  # an amount or quantity written as text ("EUR 1.234.567,89 ") is never longer
MAX_QUANTITY = 10**9
MAX_DESCRIPTION_CHARS = 500
MAX_VENDOR_CHARS = 200
MAX_LINES = 5000  # line items per invoice
MAX_FIELD_CHARS = 100  # dates, currency codes, a labelled total written with words around it
PARSE_BUDGET_S = 2.0  # CPU seconds per file (see the module docstring)

Format = Literal["json", "csv", "text"]
_EXTENSIONS: dict[str, Format] = {".json": "json", ".csv": "csv", ".txt": "text"}


class ParseError(ValueError):
    """The file cannot be read as an invoice. str(exc) is "<file name>: <reason>"."""

    def __init__(self, message: str, *, source_name: str = "", reason: str = "") -> None:
        # Only `message` goes into args, so the exception pickles (Dagster, multiprocessing).
        super().__init__(message)
        self.source_name = source_name
        self.reason = reason or message


class _Reject(Exception):
    """Internal: a reason without the file name; parse_invoice adds the name."""


# -- vocabulary ----------------------------------------------------------------------------------------
# Synonyms in priority order: when a file has several keys for one field, the earlier synonym wins
# (e.g. an explicit vendor_id beats a vendor name).
_INVOICE_FIELDS: dict[str, tuple[str, ...]] = {
    "invoice_number": ("invoicenumber", "invoiceno", "invoicenum", "invoiceid", "invno", "invnumber",
                       "invoiceref", "invoice", "number"),
    "vendor": ("vendorid", "supplierid", "vendorcode", "vendorref", "vendor", "supplier", "vendorname",
               "suppliername", "from"),
    "po_number": ("ponumber", "pono", "po", "purchaseorder", "purchaseordernumber", "purchaseorderno",
                  "poref"),
    "total": ("total", "invoicetotal", "totalamount", "amountdue", "totaldue", "grandtotal",
              "balancedue", "amount"),
    "currency": ("currency", "ccy", "currencycode", "cur"),
    "invoice_date": ("invoicedate", "date", "issued", "issuedate", "issuedon", "dateissued"),
    "due_date": ("duedate", "due", "dueon", "paymentdue"),
    "memo": ("memo", "notes", "note", "comments", "comment", "remarks"),
}
_LINE_FIELDS: dict[str, tuple[str, ...]] = {
    "description": ("description", "desc", "item", "itemdescription", "product", "service"),
    "sku": ("sku", "part", "itemcode", "partnumber", "partno", "productcode", "code"),
    "quantity": ("qty", "quantity", "units", "hours"),
    "unit_price": ("unitprice", "price", "rate", "unitcost", "priceeach", "each"),
    "amount": ("amount", "linetotal", "lineamount", "extended", "extendedprice", "total"),
}
_LINES_KEYS = ("lines", "items", "lineitems", "invoicelines")
_WRAPPER_KEYS = ("invoice", "data", "document")
_TOTAL_LABELS = frozenset(_INVOICE_FIELDS["total"]) - {"amount"}
_IGNORED_LABELS = frozenset({"subtotal", "tax", "vat", "salestax"})  # known, but not fields we keep
_INVOICE_REV = {syn: f for f, syns in _INVOICE_FIELDS.items() for syn in syns}
_LINE_REV = {syn: f for f, syns in _LINE_FIELDS.items() for syn in syns}

_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP"}
# Codes recognised inside an amount ("USD 99"). A closed list, so "12.50 per unit" is not read as
# currency "PER"; the explicit currency field accepts any three letters.
_AMOUNT_CODES = frozenset(
    "USD EUR GBP CHF JPY CAD AUD NZD SEK NOK DKK PLN CZK HUF CNY HKD SGD INR MXN BRL ZAR".split()
)
_MONTHS = {
    name: i + 1
    for i, names in enumerate((
        ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
        ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
        ("oct", "october"), ("nov", "november"), ("dec", "december"),
    ))
    for name in names
}


def _norm(key: str) -> str:
    """Canonical spelling of a key or label: 'Invoice #' -> 'invoicenumber', 'P.O. No' -> 'pono'."""
    return re.sub(r"[^a-z0-9]", "", key.strip().lower().replace("#", "number"))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _collect(items: Iterable[tuple[str, Any]], fields: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Map (key, value) pairs onto canonical fields: first non-blank value per key, then the
    highest-priority synonym per field."""
    by_key: dict[str, Any] = {}
    for key, value in items:
        k = _norm(str(key))
        if k not in by_key and not _blank(value):
            by_key[k] = value
    out: dict[str, Any] = {}
    for name, synonyms in fields.items():
        for syn in synonyms:
            if syn in by_key:
                out[name] = by_key[syn]
                break
    return out


# -- intermediate form shared by the three formats -------------------------------------------------------
@dataclass
class _Draft:
    fields: dict[str, Any] = field(default_factory=dict)  # canonical invoice field -> raw value
    lines: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (where, field -> raw value)
    warnings: list[str] = field(default_factory=list)

    def add_line(self, where: str, raw: dict[str, Any]) -> None:
        """One line item; stops at MAX_LINES + 1 so an oversized file is refused before all of it is read."""
        if len(self.lines) >= MAX_LINES:
            raise _Reject(f"more than {MAX_LINES:,} line items; the limit is {MAX_LINES:,} per invoice")
        _spend()
        self.lines.append((where, raw))


# (CPU deadline on time.thread_time, budget) of the parse in progress; checked once per line read.
_deadline: ContextVar[tuple[float, float]] = ContextVar("invoice_parse_deadline", default=(math.inf, math.inf))


def _spend() -> None:
    deadline, budget = _deadline.get()
    if time.thread_time() > deadline:
        raise _Reject(f"reading it took more than {budget:g} s of CPU; the file is too complex to read as "
                      "an invoice")


@dataclass(frozen=True)
class _Money:
    cents: int
    currency: str | None  # from a symbol or code written in the amount


# -- public entry point --------------------------------------------------------------------------------
def parse_invoice(name: str, content: bytes, *, budget_s: float = PARSE_BUDGET_S) -> InvoiceIntake:
    """Read one invoice file within `budget_s` seconds of CPU. Raises ParseError with a reason a person
    can act on."""
    token = _deadline.set((time.thread_time() + budget_s, budget_s))
    try:
        fmt = _format_of(name)
        text = _decode(content)
        if fmt == "json":
            draft = _from_json(text)
        elif fmt == "csv":
            draft = _from_csv(text)
        else:
            draft = _from_text(text)
        return _build(name, fmt, draft)
    except _Reject as exc:
        raise ParseError(f"{name}: {exc}", source_name=name, reason=str(exc)) from None
    except RecursionError:  # a structure nested just under json's own limit, met deeper in the stack
        reason = "nested too deeply to read"
        raise ParseError(f"{name}: {reason}", source_name=name, reason=reason) from None
    finally:
        _deadline.reset(token)


def _format_of(name: str) -> Format:
    suffix = PurePath(name).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if not suffix:
        raise _Reject("no file extension; expected .json, .csv or .txt")
    raise _Reject(f"unsupported file type '{suffix}'; expected .json, .csv or .txt")


def _decode(content: bytes) -> str:
    if not content:
        raise _Reject("file is empty")
    if len(content) > MAX_BYTES:
        raise _Reject(f"file is {len(content):,} bytes; the limit is {MAX_BYTES:,} bytes")
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _Reject("not a text file this reader accepts (UTF-16); save it as UTF-8")
    if b"\x00" in content:
        raise _Reject("not a text file (contains NUL bytes)")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Reject(f"not a text file (not valid UTF-8 at byte {exc.start})") from None
    # Valid UTF-8 can still be binary; a text invoice has essentially no control characters.
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\t\n\r\f\v")
    if controls > max(2, len(text) // 200):
        raise _Reject("not a text file (contains control characters)")
    if not text.strip():
        raise _Reject("file is empty (only whitespace)")
    return text


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


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number"


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


def _is_line_header(cells: list[str]) -> bool:
    """At least two line-item column names and no numbers: 'Description,SKU,Qty,Unit Price'."""
    names = sum(1 for c in cells if c and _norm(c) in _LINE_REV)
    return names >= 2 and not any(_NUMBER_CELL.match(c) for c in cells if c)


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


# -- plain text ----------------------------------------------------------------------------------------
# A label is a short run of words ending in ':' at the start of a line or after a wide gap
# ("Date: Nov 3, 2026     Due: 2026-12-03"); only known labels count.
_LABEL = re.compile(r"(?P<label>[^\W\d_][\w .#/'-]{0,40}?)\s*+:\s*+")
_LABEL_GAP = re.compile(r"\s{2,}|\t|\s*\|\s*")
_TOTAL_NO_COLON = re.compile(
    r"^\s*(?P<label>(?:grand\s+)?total(?:\s+(?:due|amount))?|amount\s+due|balance\s+due)\b[\s.]*+(?P<value>.*\d.*)$",
    re.I,
)
# "10 x Steel bracket @ $4.00 = $40.00": the head is matched, the rest split at the first '@' and '='
# (string operations, so a long run of spaces in a line item costs linear time).
_X_ITEM_HEAD = re.compile(r"\s*+(?:[-*•]\s+)?(?P<qty>\d[\d.,]*+)\s*+[x×]\s", re.I)
_SKU_IN_DESC = re.compile(
    r"[(\[]\s*+(?:sku|part(?:\s*+(?:no|number|\#))?|item\s*+code|code|p/n)\s*+[:#.]?\s*+"
    r"(?P<sku>[^)\](\[\s][^)\](\[]*+)[)\]]",
    re.I,
)
_PER_UNIT = re.compile(r"(?:/\s*+)?(?:each|ea\.?|per\s++\w++|/\s*+unit|/\s*+hr|/\s*+h)\s*+$", re.I)
_AMOUNT_IN_TEXT = re.compile(
    r"(?:(?:\b[A-Z]{3}|[$€£])\s*)?[-−]?\s*(?:[$€£]\s*)?\d(?:[\d.,'\u00a0\u202f]|\s(?=\d))*(?:\s*(?:[$€£]|[A-Z]{3}\b))?"
)
_NUMBER_CELL = re.compile(r"^\s*+\d[\d.,]*+\s*+(?:[a-z]{1,5}\.?)?\s*+$", re.I)


def _find_labels(line: str) -> list[tuple[str, int, int]]:
    """Known labels in a line: (normalised label, start, end of 'Label:')."""
    starts = [len(line) - len(line.lstrip(" \t-*•"))] + [m.end() for m in _LABEL_GAP.finditer(line)]
    found: list[tuple[str, int, int]] = []
    for pos in sorted(set(starts)):
        if found and pos < found[-1][2]:
            continue
        m = _LABEL.match(line, pos)
        if m:
            key = _norm(m.group("label"))
            if key in _INVOICE_REV or key in _IGNORED_LABELS:
                found.append((key, m.start(), m.end()))
    return found


def _from_text(text: str) -> _Draft:
    draft = _Draft()
    pairs: list[tuple[str, str]] = []
    memo: list[str] = []
    in_memo = False
    pipe_header: dict[str, int] | None = None

    for raw_line in text.splitlines():
        _spend()
        line = raw_line.rstrip()
        labels = _find_labels(line)
        if labels:
            in_memo = False
            for i, (key, _start, end) in enumerate(labels):
                value = line[end:labels[i + 1][1] if i + 1 < len(labels) else len(line)].strip()
                if _INVOICE_REV.get(key) == "memo":
                    in_memo = True
                    memo.append(value)
                elif key not in _IGNORED_LABELS:
                    pairs.append((key, value))
            continue
        if in_memo:
            # Everything after Memo:/Notes: up to the next known label is the memo, item-like or not.
            memo.append(line)
            continue
        if not line.strip():
            continue
        if (m := _TOTAL_NO_COLON.match(line)) and _AMOUNT_IN_TEXT.fullmatch(m.group("value").strip()):
            pairs.append((m.group("label"), m.group("value")))  # "TOTAL DUE  $65.00" without a colon
            continue
        if (x := _x_item(line)) and re.search(r"\d", x[2]):
            qty, raw_desc, price, amount = x
            desc, sku = _split_sku(raw_desc)
            item = {"description": desc, "quantity": qty, "unit_price": _PER_UNIT.sub("", price).rstrip()}
            if sku:
                item["sku"] = sku
            if amount:
                item["amount"] = amount
            draft.add_line(f"item '{line.strip()[:60]}'", item)
            continue
        if "|" in line:
            pipe_header = _pipe_row(line, pipe_header, draft, pairs)

    draft.fields = _collect(pairs, _INVOICE_FIELDS)
    if memo:
        draft.fields["memo"] = "\n".join(memo).strip()
    if isinstance(draft.fields.get("total"), str):
        _check_length(draft.fields["total"], "total", MAX_FIELD_CHARS)
        # A labelled total may carry words around it ("$65.00 USD (incl. VAT)"): keep the amount.
        if m := _AMOUNT_IN_TEXT.search(draft.fields["total"]):
            if re.match(r"[eE][-+]?\d", draft.fields["total"][m.end():]):  # "1e300": not an amount we read
                raise _Reject(f"cannot read total {_show(draft.fields['total'])} as an amount")
            draft.fields["total"] = m.group(0)
    return draft


def _x_item(line: str) -> tuple[str, str, str, str | None] | None:
    """'QTY x DESCRIPTION @ PRICE [= AMOUNT]' -> (qty, description, price, amount), else None."""
    m = _X_ITEM_HEAD.match(line)
    if not m:
        return None
    desc, at, tail = line[m.end():].partition("@")
    if not at or not desc.strip():
        return None
    price, eq, amount = tail.partition("=")
    price, amount = price.strip(), amount.strip()
    if not price or (eq and not amount):
        return None
    return m.group("qty"), desc, price, amount or None


def _split_sku(desc: str) -> tuple[str, str | None]:
    desc = desc.strip()
    _check_length(desc, "line item description", MAX_DESCRIPTION_CHARS)
    m = _SKU_IN_DESC.search(desc)
    if not m:
        return desc, None
    return (desc[: m.start()] + desc[m.end():]).strip(" -,"), m.group("sku").strip()


def _pipe_row(line: str, header: dict[str, int] | None, draft: _Draft,
              pairs: list[tuple[str, str]]) -> dict[str, int] | None:
    """One row of a 'DESCRIPTION | QTY | PRICE | AMOUNT' table; returns the (possibly new) header."""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if all(re.fullmatch(r"[:\-=+\s]*", c) for c in cells):
        return header  # separator row
    if _is_line_header(cells):
        new: dict[str, int] = {}
        for col, c in enumerate(cells):
            if (name := _LINE_REV.get(_norm(c))) and name not in new:
                new[name] = col
        return new
    first = next((c for c in cells if c), "")
    if _norm(first) in _TOTAL_LABELS:
        last = next(c for c in reversed(cells) if c)
        if last != first:
            pairs.append(("total", last))
        return header
    if _norm(first) in _IGNORED_LABELS:
        return header
    if header is None:
        # No header: the documented positional shape DESCRIPTION | QTY | PRICE [| AMOUNT].
        if len(cells) not in (3, 4) or not _NUMBER_CELL.match(cells[1]) or not re.search(r"\d", cells[2]):
            draft.warnings.append(
                f"ignored a table row that is not DESCRIPTION | QTY | PRICE | AMOUNT: '{line.strip()[:80]}'")
            return header
        mapping = {"description": 0, "quantity": 1, "unit_price": 2} | ({"amount": 3} if len(cells) == 4 else {})
    else:
        mapping = header
    raw = {name: cells[col] for name, col in mapping.items() if col < len(cells) and cells[col]}
    if raw:
        if "description" in raw:
            raw["description"], sku = _split_sku(raw["description"])
            if sku and "sku" not in raw:
                raw["sku"] = sku
        draft.add_line(f"table row '{line.strip()[:60]}'", raw)
    return header


# -- values --------------------------------------------------------------------------------------------
def _clip(value: Any, limit: int = 60) -> str:
    """A value for a message: its text, cut short (a reason must not carry a whole hostile field)."""
    s = value if isinstance(value, str) else repr(value)
    return s if len(s) <= limit else f"{s[:limit]}... ({len(s):,} characters)"


def _show(value: Any) -> str:
    """repr() of a value for a message, cut short."""
    return repr(value) if not isinstance(value, str) or len(value) <= 60 else repr(_clip(value))


def _check_length(value: Any, what: str, limit: int) -> None:
    if isinstance(value, str) and len(value) > limit:
        raise _Reject(f"{what} is {len(value):,} characters long; the limit is {limit:,}")


def _number(value: Any, what: str, *, noun: str = "an amount") -> Decimal:
    """THE checked conversion every amount and quantity goes through: a JSON number or a plain numeric
    text (no currency, no sign) -> a finite Decimal with at most MAX_DIGITS significant digits and a
    magnitude below 10**15. Anything else is a _Reject that says what is wrong."""
    if isinstance(value, bool):
        raise _Reject(f"{what} must be {noun}, not true/false")
    if isinstance(value, int):
        if abs(value) >= 10**MAX_DIGITS:
            raise _Reject(f"{what} has more than {MAX_DIGITS} digits; it is not {noun}")
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Reject(f"{what} {value!r} is not a finite number")
        number = Decimal(repr(value))
    elif isinstance(value, str):
        _check_length(value.strip(), what, MAX_NUMBER_CHARS)
        try:
            number = _decimal(value)
        except (ValueError, ArithmeticError):
            raise _Reject(f"cannot read {what} {_show(value)} as {noun}") from None
    else:
        raise _Reject(f"{what} must be {noun}, not {_json_type(value)}")
    if not number.is_finite():
        raise _Reject(f"{what} {_show(value)} is not a finite number")
    if number and len(number.normalize().as_tuple().digits) > MAX_DIGITS:
        raise _Reject(f"{what} {_show(value)} has more than {MAX_DIGITS} significant digits")
    if number and number.adjusted() >= 15:
        raise _Reject(f"{what} {_show(value)} is too large to be {noun}")
    if number and number.adjusted() < -MAX_DIGITS:
        number = Decimal(0)  # 1e-300: below any cent or fraction of a unit we keep
    return number


def _cents(value: Decimal, what: str) -> int:
    """A computed amount in cents (half up), checked against MAX_CENTS before it becomes an int."""
    if not value.is_finite() or abs(value) > MAX_CENTS:
        raise _Reject(f"{what} comes to more than {_fmt(MAX_CENTS)}; the file is misread or not an invoice")
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _decimal(text: str) -> Decimal:
    """A plain number with thousands/decimal separators (see the module docstring)."""
    s = re.sub(r"[\s\u00a0\u202f']", "", text)
    if not re.fullmatch(r"\d[\d.,]*|[.,]\d+", s) or s[-1] in ".,":
        raise ValueError(text)
    commas, dots = s.count(","), s.count(".")
    if commas and dots:
        decimal_sep = "," if s.rfind(",") > s.rfind(".") else "."
    elif commas:
        decimal_sep = "," if commas == 1 and len(s.split(",")[1]) != 3 else ""
    elif dots:
        decimal_sep = "." if dots == 1 else ""
    else:
        decimal_sep = ""
    thousands = {",", "."} - {decimal_sep}
    integer, _, fraction = s.rpartition(decimal_sep) if decimal_sep else (s, "", "")
    if decimal_sep and decimal_sep in integer:
        raise ValueError(text)
    for sep in thousands:
        if sep in integer:
            groups = integer.split(sep)
            if not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
                raise ValueError(text)
            integer = "".join(groups)
    if not decimal_sep:
        return Decimal(integer)
    return Decimal(f"{integer or '0'}.{fraction}")


def _money(value: Any, what: str) -> _Money:
    """An amount as integer cents (half up) plus any currency written with it."""
    currency: str | None = None
    if isinstance(value, bool) or value is None:
        raise _Reject(f"{what} must be an amount, not {_json_type(value)}")
    if isinstance(value, dict):
        inner = _collect(value.items(), {"amount": ("amount", "value"), "currency": ("currency", "ccy")})
        if "amount" not in inner or isinstance(inner["amount"], (dict, list)):
            raise _Reject(f"{what} must be an amount, not an object")
        money = _money(inner["amount"], what)
        code = _currency_code(inner.get("currency"))
        return _Money(money.cents, code or money.currency)
    if isinstance(value, str):
        amount, currency = _money_text(value, what)
    else:
        amount = _number(value, what)
    if amount < 0:
        raise _Reject(f"{what} is negative ({_show(value)}); credit notes and negative lines are not accepted")
    if amount * 100 > MAX_CENTS:
        raise _Reject(f"{what} {_show(value)} is implausibly large (the limit is {_fmt(MAX_CENTS)})")
    return _Money(_cents(amount * 100, what), currency)


def _money_text(value: str, what: str) -> tuple[Decimal, str | None]:
    s = value.strip()
    _check_length(s, what, MAX_NUMBER_CHARS)
    negative = False
    if s.startswith("(") and s.endswith(")"):  # accounting notation
        negative, s = True, s[1:-1]
    codes: set[str] = set()

    def take(m: re.Match[str]) -> str:
        token = m.group(0)
        codes.add("USD" if token == "US$" else _SYMBOLS.get(token, token.upper()))
        return " "

    s = re.sub(r"US\$|[$€£]|(?<![A-Za-z])[A-Za-z]{3}(?![A-Za-z])", take, s)
    unknown = {c for c in codes if c not in _AMOUNT_CODES}
    if unknown:
        raise _Reject(f"cannot read {what} {_show(value)} as an amount")
    if len(codes) > 1:
        raise _Reject(f"{what} {_show(value)} names more than one currency ({', '.join(sorted(codes))})")
    s = s.strip()
    if s[:1] in "-−":
        negative, s = True, s[1:].strip()
    elif s[:1] == "+":
        s = s[1:].strip()
    if not re.fullmatch(r"[\d.,\s\u00a0\u202f']+", s):
        raise _Reject(f"cannot read {what} {_show(value)} as an amount")
    amount = _number(s, what)
    return (-amount if negative else amount), (codes.pop() if codes else None)


def _quantity(value: Any, what: str) -> Decimal:
    if isinstance(value, str):
        # "10 pcs", "7.5 h", "x3": the unit words carry no information we use.
        s = value.strip()
        _check_length(s, what, MAX_NUMBER_CHARS)
        s = re.sub(r"(?i)(?:pcs?|ea|each|units?|hrs?|hours?|h|days?|boxes|box)\.?$", "", s).strip()
        s = s.lstrip("xX×").strip()
        negative = s[:1] in "-−"
        body = s[1:].strip() if negative else s
        if not re.fullmatch(r"[\d.,\s\u00a0\u202f']+", body):
            raise _Reject(f"cannot read {what} {_show(value)} as a number")
        qty = _number(body, what, noun="a quantity")
        qty = -qty if negative else qty
    else:
        qty = _number(value, what, noun="a quantity")
    if qty < 0:
        raise _Reject(f"{what} is negative ({_show(value)}); credit notes and negative lines are not accepted")
    if qty > MAX_QUANTITY:
        raise _Reject(f"{what} {_show(value)} is too large (the limit is {MAX_QUANTITY:,})")
    return qty


def _parse_date(value: Any) -> date:
    """See the module docstring for the NN/NN/YYYY rule. Raises ValueError when unreadable."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(value)
    s = str(value).strip()
    s = re.sub(r"^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+", "", s, flags=re.I)  # "Tue, Nov 3, 2026"
    s = re.sub(r"(?<=\d)(?:st|nd|rd|th)\b", "", s, flags=re.I)  # "3rd November 2026"
    if m := re.fullmatch(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?", s):
        return date(int(m[1]), int(m[3]), int(m[4]))
    if m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", s):
        return date(int(m[1]), int(m[2]), int(m[3]))
    if m := re.fullmatch(r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})", s):
        first, second, year = int(m[1]), int(m[3]), int(m[4])
        if m[2] == "." or first > 12:
            return date(year, second, first)
        return date(year, first, second)  # US month/day
    if m := re.fullmatch(r"(\d{1,2})[\s\-.]+([A-Za-z]+)\.?,?[\s\-.]+(\d{4})", s):
        return date(int(m[3]), _month(m[2]), int(m[1]))
    if m := re.fullmatch(r"([A-Za-z]+)\.?[\s\-]+(\d{1,2}),?[\s\-]+(\d{4})", s):
        return date(int(m[3]), _month(m[1]), int(m[2]))
    try:
        # An e-mail's own "Date: Tue, 3 Nov 2026 10:15:00 +0100" header (RFC 2822).
        return parsedate_to_datetime(str(value).strip()).date()
    except (TypeError, ValueError, IndexError):
        raise ValueError(value) from None


def _month(name: str) -> int:
    try:
        return _MONTHS[name.lower()]
    except KeyError:
        raise ValueError(name) from None


def _currency_code(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    s = value.strip()
    s = _SYMBOLS.get(s, s).upper()
    return s if re.fullmatch(r"[A-Z]{3}", s) else None


def _text(value: Any, what: str, *, limit: int | None = MAX_ID_CHARS) -> str | None:
    """A scalar written as text (JSON numbers become their digits); blank -> None."""
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise _Reject(f"{what} must be a single value, not {_json_type(value)}")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        value = int(value)
    if isinstance(value, str) and limit is not None and len(value) > 4 * limit:
        raise _Reject(f"{what} is {len(value):,} characters long; the limit is {limit:,}")
    s = " ".join(str(value).split())
    if not s:
        return None
    if limit is not None and len(s) > limit:
        raise _Reject(f"{what} is {len(s):,} characters long; the limit is {limit:,}")
    return s


def _vendor(value: Any) -> str | None:
    if isinstance(value, dict):
        picked = _collect(value.items(), {"ref": ("vendorid", "id", "code", "number", "name", "vendorname")})
        value = picked.get("ref")
    s = _text(value, "vendor", limit=MAX_VENDOR_CHARS)
    if s is None:
        return None
    # "Acme Industrial Supply (V-1001)": the id in brackets is the better reference.
    if m := re.fullmatch(r".*?[(\[]\s*([A-Za-z]{0,6}[-\s]?\d[\w-]*)\s*[)\]]", s):
        return m.group(1)
    return s


def _fmt(cents: int) -> str:
    return f"{cents / 100:,.2f}"


# -- assembly ------------------------------------------------------------------------------------------
def _build(name: str, fmt: Format, draft: _Draft) -> InvoiceIntake:
    f, warnings = draft.fields, draft.warnings
    hints: list[tuple[str, str]] = []  # (currency written in an amount, where)

    currency = None
    if not _blank(f.get("currency")):
        _check_length(f["currency"], "currency", MAX_FIELD_CHARS)
        currency = _currency_code(f["currency"])
        if currency is None:
            warnings.append(f"currency {f['currency']!r} is not a 3-letter code; ignored")

    total: int | None = None
    if not _blank(f.get("total")):
        money = _money(f["total"], "total")
        total = money.cents
        if money.currency:
            hints.append((money.currency, "the total"))

    lines = [li for where, raw in draft.lines if (li := _line(where, raw, warnings, hints)) is not None]
    if total is None and not lines:
        raise _Reject("no invoice total or line items found")

    if currency is None and hints:
        currency = hints[0][0]
    for code, where in hints:
        if code != currency:
            warnings.append(f"{where} is written in {code} but the invoice currency is {currency}")

    if total is not None and lines and total != (line_sum := sum(li.amount_cents for li in lines)):
        warnings.append(f"total {_fmt(total)} differs from the sum of the line amounts {_fmt(line_sum)}")

    dates: dict[str, date | None] = {}
    for key, label in (("invoice_date", "invoice date"), ("due_date", "due date")):
        dates[key] = None
        if not _blank(f.get(key)):
            _check_length(f[key], label, MAX_FIELD_CHARS)
            try:
                dates[key] = _parse_date(f[key])
            except ValueError:
                warnings.append(f"could not read {label} {f[key]!r}; left empty")

    memo = _memo(f.get("memo"))
    if len(memo) > MAX_MEMO_CHARS:
        warnings.append(f"memo cut to {MAX_MEMO_CHARS} characters (it had {len(memo)})")
        memo = memo[:MAX_MEMO_CHARS]

    return InvoiceIntake(
        source_name=name,
        format=fmt,
        vendor_ref=_vendor(f.get("vendor")),
        invoice_number=_text(f.get("invoice_number"), "invoice number"),
        po_number=_text(f.get("po_number"), "PO number"),
        currency=currency,
        invoice_date=dates["invoice_date"],
        due_date=dates["due_date"],
        total_cents=total,
        lines=tuple(lines),
        memo=memo,
        parse_warnings=tuple(warnings),
    )


def _memo(value: Any) -> str:
    if _blank(value):
        return ""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value if not _blank(v)).strip()
    return str(value).replace("\r\n", "\n").strip()


def _line(where: str, raw: dict[str, Any], warnings: list[str], hints: list[tuple[str, str]]) -> InvoiceLine | None:
    _spend()
    description = _text(raw.get("description"), f"{where} description", limit=MAX_DESCRIPTION_CHARS)
    sku = _text(raw.get("sku"), f"{where} SKU")
    has = {k: not _blank(raw.get(k)) for k in ("quantity", "unit_price", "amount")}
    if not has["unit_price"] and not has["amount"]:
        if description or sku or has["quantity"]:
            warnings.append(f"{where}: no price or amount; line ignored")
        return None

    price = _money(raw["unit_price"], f"{where} unit price") if has["unit_price"] else None
    amount = _money(raw["amount"], f"{where} amount") if has["amount"] else None
    for money, what in ((price, "unit price"), (amount, "amount")):
        if money and money.currency:
            hints.append((money.currency, f"{where} {what}"))

    if has["quantity"]:
        qty = _quantity(raw["quantity"], f"{where} quantity")
    elif price and amount and price.cents and amount.cents % price.cents == 0:
        qty = Decimal(amount.cents // price.cents)  # "12.50 ... 25.00" without a quantity: 2
    else:
        qty = Decimal(1)

    if price is None:
        assert amount is not None
        unit = _cents(Decimal(amount.cents) / qty, f"{where} unit price") if qty else amount.cents
    else:
        unit = price.cents
    computed = _cents(qty * unit, f"{where} amount (quantity x unit price)")
    if amount is None:
        line_amount = computed
    else:
        line_amount = amount.cents
        if price is not None and abs(line_amount - computed) > 1:
            warnings.append(
                f"{where}: amount {_fmt(line_amount)} differs from quantity x unit price ({_fmt(computed)}); "
                "kept the stated amount"
            )
    if not description:
        description = sku or "(no description)"
        warnings.append(f"{where}: no description")
    return InvoiceLine(description=description, sku=sku, quantity=float(qty), unit_price_cents=unit,
                       amount_cents=line_amount)
