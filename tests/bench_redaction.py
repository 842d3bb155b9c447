"""Benchmark (a script, not a test): `python tests/bench_redaction.py [seconds-per-case]`.

Measures `redact` on realistic trace rows against the previous regex-only implementation (copied
below as the baseline) in the same process, and prints redactions per second and the slowdown."""

import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent_pipelines.framework.redaction import redact, redact_text  # noqa: E402

# --- baseline: the regex-only implementation this module replaced ------------------------------------
_OLD_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)),
    ("api_key", re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}\b")),
    ("bearer", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{12,}")),
    ("url_password", re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")),
    ("card", re.compile(r"\b(?:\d[ -]?){13,19}\b")),
]
_OLD_SECRET_KEYS = re.compile(r"(?i)(^|[_-])(password|passwd|secret|token|api[_-]?key|authorization|credentials?)$")


def old_redact_text(text: str) -> str:
    for label, pattern in _OLD_PATTERNS:
        text = pattern.sub(f"[REDACTED:{label}]", text)
    return text


def old_redact(value: Any) -> Any:
    if isinstance(value, str):
        return old_redact_text(value)
    if isinstance(value, dict):
        return {k: ("[REDACTED:secret]" if isinstance(v, str) and v and _OLD_SECRET_KEYS.search(str(k))
                    else old_redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [old_redact(v) for v in value]
    return value


# --- workload ---------------------------------------------------------------------------------------
INVOICE_TEXT = (
    "Invoice INV-10023 from Acme Industrial Supplies GmbH, dated 2026-11-22, references purchase order "
    "PO-2024-0012 (ref 100000000). Line 1: 40 units of hydraulic couplings at 900.00 EUR each; line 2: "
    "freight and handling 1,250.00 EUR. Subtotal 36,000.00 EUR, VAT 19% 6,840.00 EUR, total 42,840.00 EUR, "
    "payable within 30 days net. The goods were received on 2026-11-20 under ticket TCK-000123 and matched "
    "against the approved budget of 2500000 for cost centre 4410. Remit to the account on file; quote the "
    "invoice number on the payment advice. Pricing follows catalogue version 2026.11.1."
)


def clean_row(i: int) -> dict[str, Any]:
    """A trace row with ids, amounts, timestamps and a paragraph of invoice text, and no finding."""
    return {
        "tool": "erp.lookup_invoice", "kind": "read", "impact": "none", "status": "ok", "error": None,
        "attempts": 1, "latency_ms": 41.7 + i % 7,
        "run_id": str(uuid.UUID(int=i * 7919 + 1)), "intent_id": f"int-{i:016x}",
        "approval_id": f"apr-a6e38a63a7f5{i:08x}", "invoice_id": f"inv-3f2a9c01{i:08x}",
        "source_digest": "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592",
        "at": "2026-11-22T20:28:01+00:00",
        "params": {"invoice_number": "INV-10023", "po_number": "PO-2024-0012", "currency": "EUR"},
        "result": {"amount": "1234567.89", "total": 2500000, "lines": [{"qty": 40, "unit_price": "900.00"},
                                                                      {"qty": 1, "unit_price": "1250.00"}],
                   "vendor": "Acme Industrial Supplies GmbH", "due": "2026-12-22", "tax_rate": "19%"},
        "prompt_tokens": 1834, "completion_tokens": 211, "model": "gpt-4o-mini", "prompt_version": "extract@3",
        "text": INVOICE_TEXT,
    }


def dirty_row(i: int) -> dict[str, Any]:
    """The same row carrying a secret, contact details, an IBAN and a card number."""
    row = clean_row(i)
    row["text"] = (INVOICE_TEXT + " Contact j.doe@acme.example or +49 30 901820; IBAN DE89 3704 0044 0532 0130 00;"
                   " card 4111 1111 1111 1111; api_key: sk-live-abcdefghijklmnop1234")
    row["params"]["dsn"] = "postgresql://svc:hunter2@db.internal/erp"
    return row


def bench(fn: Any, rows: list[Any], seconds: float) -> float:
    """Redactions per second: calls of `fn` over `rows` repeated for about `seconds`."""
    for row in rows[:50]:
        fn(row)  # warm-up (lazy imports, plugin instances)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for row in rows:
            fn(row)
        n += len(rows)
    return n / elapsed


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    t0 = time.perf_counter()
    redact_text("warm up +1 415-555-0132 password: x")
    print(f"first call (lazy imports + plugin set-up): {(time.perf_counter() - t0) * 1000:.0f} ms")
    assert redact(clean_row(1)) == clean_row(1), "the clean row must come back unchanged"
    for name, make in (("clean trace row", clean_row), ("trace row with findings", dirty_row)):
        rows = [make(i) for i in range(500)]
        old = bench(old_redact, rows, seconds)
        new = bench(redact, rows, seconds)
        print(f"{name:>24}: new {new:9,.0f}/s ({1e6 / new:7.1f} us/row)   old regex-only {old:9,.0f}/s "
              f"({1e6 / old:6.1f} us/row)   new is {old / new:.1f}x slower")
    text = [INVOICE_TEXT + f" #{i}" for i in range(500)]
    old, new = bench(old_redact_text, text, seconds), bench(redact_text, text, seconds)
    print(f"{'invoice paragraph only':>24}: new {new:9,.0f}/s ({1e6 / new:7.1f} us/str)   old regex-only {old:9,.0f}/s "
          f"({1e6 / old:6.1f} us/str)   new is {old / new:.1f}x slower")


if __name__ == "__main__":
    main()
