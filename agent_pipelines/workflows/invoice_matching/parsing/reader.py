"""The entry point: a file's bytes, within the CPU budget, to an InvoiceIntake or a ParseError
(format by extension, decoding, then the format's reader and the assembly of the draft)."""

from __future__ import annotations

import time
import unicodedata
from datetime import date
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from agent_pipelines.workflows.invoice_matching.models import InvoiceIntake, InvoiceLine
from agent_pipelines.workflows.invoice_matching.parsing.common import (_blank, _deadline, _Draft, _EXTENSIONS, Format,
                                                                       MAX_BYTES, MAX_DESCRIPTION_CHARS,
                                                                       MAX_FIELD_CHARS, MAX_MEMO_CHARS, PARSE_BUDGET_S,
                                                                       ParseError, _Reject, _spend)
from agent_pipelines.workflows.invoice_matching.parsing.formats import _from_csv, _from_json
from agent_pipelines.workflows.invoice_matching.parsing.text import _from_text
from agent_pipelines.workflows.invoice_matching.parsing.values import (_cents, _check_length, _currency_code, _fmt,
                                                                       _money, _parse_date, _quantity, _text, _vendor)


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
