"""Plain-text invoices (e-mail bodies, pasted PDFs) into a draft: known labels and line items."""

from __future__ import annotations

import re

from agent_pipelines.workflows.invoice_matching.parsing.common import (_collect, _Draft, _IGNORED_LABELS,
                                                                       _INVOICE_FIELDS, _INVOICE_REV, _is_line_header,
                                                                       _LINE_REV, MAX_DESCRIPTION_CHARS,
                                                                       MAX_FIELD_CHARS, _norm, _NUMBER_CELL, _Reject,
                                                                       _spend, _TOTAL_LABELS)
from agent_pipelines.workflows.invoice_matching.parsing.values import _check_length, _show


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


