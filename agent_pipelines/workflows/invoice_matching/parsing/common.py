"""What the invoice reader's parts share: the limits, the error, the field vocabulary, the draft
the three formats fill, and the CPU budget of a parse in progress."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal


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


_NUMBER_CELL = re.compile(r"^\s*+\d[\d.,]*+\s*+(?:[a-z]{1,5}\.?)?\s*+$", re.I)


def _is_line_header(cells: list[str]) -> bool:
    """At least two line-item column names and no numbers: 'Description,SKU,Qty,Unit Price'."""
    names = sum(1 for c in cells if c and _norm(c) in _LINE_REV)
    return names >= 2 and not any(_NUMBER_CELL.match(c) for c in cells if c)

