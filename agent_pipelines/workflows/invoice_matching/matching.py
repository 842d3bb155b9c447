"""Deterministic matching: the offline proposer, and the arithmetic VALIDATE recomputes whatever
proposed the match (model or rules)."""

from difflib import SequenceMatcher

from agent_pipelines.workflows.invoice_matching.models import (
    InvoiceIntake,
    InvoiceLine,
    LineMatch,
    MatchContext,
    MatchProposal,
    POLineSnapshot,
    POSnapshot,
)


def _norm(s: str | None) -> str:
    return " ".join((s or "").lower().split())


def match_line(line: InvoiceLine, po: POSnapshot) -> POLineSnapshot | None:
    """SKU first, then the most similar description (ratio >= 0.6), then an exact unit price."""
    if line.sku:
        for pl in po.lines:
            if _norm(pl.sku) == _norm(line.sku):
                return pl
    scored = sorted(((SequenceMatcher(None, _norm(line.description), _norm(pl.description)).ratio(), pl.line_no, pl)
                     for pl in po.lines), key=lambda t: (-t[0], t[1]))
    if scored and scored[0][0] >= 0.6:
        return scored[0][2]
    same_price = [pl for pl in po.lines if pl.unit_price_cents == line.unit_price_cents]
    return same_price[0] if len(same_price) == 1 else None


def matched_amount(intake: InvoiceIntake, po: POSnapshot, matches: list[LineMatch]) -> int:
    by_no = {pl.line_no: pl for pl in po.lines}
    total = 0.0
    for m in matches:
        if m.po_line_no is not None and m.po_line_no in by_no and 0 <= m.invoice_line < len(intake.lines):
            total += intake.lines[m.invoice_line].quantity * by_no[m.po_line_no].unit_price_cents
    return round(total)


def choose_po(intake: InvoiceIntake, context: MatchContext) -> POSnapshot | None:
    if intake.po_number:
        return next((po for po in context.candidates if po.po_number == intake.po_number.strip().upper()), None)
    return context.candidates[0] if len(context.candidates) == 1 else None


def propose(intake: InvoiceIntake, context: MatchContext) -> MatchProposal:
    """The offline proposer: the same typed proposal a model would return, from rules."""
    po = choose_po(intake, context)
    total = intake.amount_cents
    if po is None:
        return MatchProposal(po_number=None, line_matches=[], matched_po_amount_cents=0, variance_cents=total,
                             invoice_total_cents=total, rationale="no candidate PO fits this invoice")
    matches = [LineMatch(invoice_line=i, po_line_no=(pl.line_no if (pl := match_line(li, po)) else None))
               for i, li in enumerate(intake.lines)]
    amount = matched_amount(intake, po, matches)
    unmatched = sum(m.po_line_no is None for m in matches)
    return MatchProposal(
        po_number=po.po_number, line_matches=matches, matched_po_amount_cents=amount, variance_cents=total - amount,
        invoice_total_cents=total,
        rationale=(f"{po.po_number} {'is named on the invoice' if intake.po_number else 'is the vendor’s only open PO'}; "
                   f"{len(matches) - unmatched}/{len(matches)} lines matched by SKU or description"))
