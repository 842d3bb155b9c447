"""Parse a received invoice file (JSON, CSV or plain text) into an InvoiceIntake.

The parts: reader.py (the entry point: bytes, decoding, assembly into the intake), formats.py (JSON and
CSV) and text.py (plain text) fill a draft (common.py: limits, vocabulary, the CPU budget), values.py
checks and converts every value read.

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

from agent_pipelines.workflows.invoice_matching.parsing.common import MAX_BYTES, ParseError
from agent_pipelines.workflows.invoice_matching.parsing.reader import parse_invoice

__all__ = ["MAX_BYTES", "ParseError", "parse_invoice"]
