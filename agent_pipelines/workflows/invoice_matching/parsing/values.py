"""Values: every amount, quantity, date, currency and text field a format read, checked and converted
(one checked conversion each, with the limits of parsing/common.py)."""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from agent_pipelines.workflows.invoice_matching.parsing.common import (_AMOUNT_CODES, _collect, MAX_CENTS, MAX_DIGITS,
                                                                       MAX_ID_CHARS, MAX_NUMBER_CHARS, MAX_QUANTITY,
                                                                       MAX_VENDOR_CHARS, _Money, _MONTHS, _Reject,
                                                                       _SYMBOLS)


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

