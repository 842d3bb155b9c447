"""Deterministic triage: the offline proposer, and the dedupe VALIDATE recomputes whatever proposed
the triage (model or rules).

Dedupe looks only at the requester's own open tickets. A message joins one when its subject names
it ("[T-1002]") or when the subjects, with reply prefixes, ticket references and punctuation removed,
have a difflib ratio >= SIMILARITY_THRESHOLD. 0.72 sits between what the two cases look like: a
reply or a reworded repeat ("Invoice PDF download fails" / "invoice PDF download still failing")
scores 0.8-1.0, while two different problems of one requester ("Invoice PDF download fails" / "Push
notifications arrive late") stay below 0.5; the demo data is checked against it in the tests."""

import re
from difflib import SequenceMatcher

from agent_pipelines.framework.workflow import StepModel
from agent_pipelines.workflows.ticket_intake.models import (
    CATEGORIES,
    PRIORITIES,
    MessageIntake,
    ProductSnapshot,
    TicketSnapshot,
    TriageContext,
    TriageProposal,
)

SIMILARITY_THRESHOLD = 0.72

_REPLY_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg)\s*:\s*)+", re.I)
_TICKET_REF = re.compile(r"\bT-(\d{3,})\b", re.I)


def _words(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(rf"\b{p}\b", re.I) for p in patterns)


# Words that point at a product, by product_id. The product's own name counts double.
PRODUCT_WORDS: dict[str, tuple[re.Pattern[str], ...]] = {
    "BILLING_PORTAL": _words("billing", "invoices?", "receipts?", "vat", "payment methods?", "credit card",
                             "subscriptions?"),
    "MOBILE_APP": _words("app", "ios", "android", "iphone", "ipad", "tablet", "push notifications?", "app store"),
    "API": _words("api", "endpoints?", "webhooks?", "sdk", "rate limit(ed|s)?", "api keys?", r"http \d{3}",
                  r"/v\d+/\w+"),
}

# First match wins, in this order: an explicit feature request may mention an error, a lock-out is an
# access problem even when it shows an error.
CATEGORY_WORDS: tuple[tuple[str, tuple[re.Pattern[str], ...]], ...] = (
    ("feature_request", _words("feature request", "would be (great|nice|helpful)", "please add", "could you add",
                               "suggestion", "it would help", "dark mode")),
    ("account_access", _words("log ?in", "sign ?in", "password", "locked out", "2fa", "two-factor", "sso", "mfa",
                              "access denied", "permissions?")),
    ("bug", _words("errors?", "crash(es|ed|ing)?", "broken", "fails?", "failing", "failed", "not working",
                   "doesn't work", "bug", "5\\d\\d", "timeouts?", "times out", "blank", "freezes?", "wrong")),
    ("billing", _words("refund", "charged?", "charged twice", "invoices?", "payment", "vat", "receipt", "pricing",
                       "credit card", "plan")),
)

URGENT_WORDS = _words("urgent", "outage", "production (is )?down", "down for everyone", "all (our )?users",
                      "data loss", "emergency")
HIGH_WORDS = _words("blocked", "cannot", "can't", "unable", "locked out", "crash(es|ed|ing)?", "fails?", "failing",
                    "5\\d\\d")

# Teams by category; bugs and questions go to the product's own team.
CATEGORY_TEAM = {"billing": "BILLING", "account_access": "ACCESS", "feature_request": "FEEDBACK"}
FALLBACK_TEAM = "SUPPORT"


class DuplicateMatch(StepModel):
    ticket_id: str
    score: float
    by: str  # "reference" | "subject"


def normalize_subject(subject: str) -> str:
    s = _REPLY_PREFIX.sub("", subject or "")
    s = _TICKET_REF.sub(" ", s)
    s = re.sub(r"[^\w\s]", " ", s.lower())
    return " ".join(s.split())


def similarity(a: str, b: str) -> float:
    return round(SequenceMatcher(None, normalize_subject(a), normalize_subject(b)).ratio(), 3)


def find_duplicate(intake: MessageIntake, open_tickets: tuple[TicketSnapshot, ...]) -> DuplicateMatch | None:
    """The requester's open ticket this message belongs to: one its subject names, else the most
    similar subject at or above the threshold (ties: the oldest ticket)."""
    by_id = {t.ticket_id: t for t in open_tickets}
    for m in _TICKET_REF.finditer(intake.subject):
        if (ref := f"T-{m.group(1)}") in by_id:
            return DuplicateMatch(ticket_id=ref, score=1.0, by="reference")
    scored = sorted(((similarity(intake.subject, t.subject), t.ticket_id) for t in open_tickets),
                    key=lambda s: (-s[0], len(s[1]), s[1]))
    if scored and normalize_subject(intake.subject) and scored[0][0] >= SIMILARITY_THRESHOLD:
        return DuplicateMatch(ticket_id=scored[0][1], score=scored[0][0], by="subject")
    return None


def identify_product(intake: MessageIntake, products: tuple[ProductSnapshot, ...]) -> ProductSnapshot | None:
    """The form's product field when it names a product; else the one product the text points at
    most. A tie or no hit is None: VALIDATE asks instead of guessing."""
    if intake.product:
        named = intake.product.strip().lower()
        hit = next((p for p in products if named in (p.product_id.lower(), p.name.lower())), None)
        if hit:
            return hit
    scores = []
    for p in products:
        score = 2 * len(re.findall(rf"\b{re.escape(p.name)}\b", intake.text, re.I))
        score += sum(1 for w in PRODUCT_WORDS.get(p.product_id, ()) if w.search(intake.text))
        scores.append((score, p))
    scores.sort(key=lambda s: -s[0])
    if not scores or scores[0][0] == 0 or (len(scores) > 1 and scores[1][0] == scores[0][0]):
        return None
    return scores[0][1]


def categorize(text: str) -> str:
    return next((cat for cat, words in CATEGORY_WORDS if any(w.search(text) for w in words)), "question")


def prioritize(text: str, category: str) -> str:
    if any(w.search(text) for w in URGENT_WORDS):
        return "urgent"
    if category == "feature_request":
        return "low"
    if any(w.search(text) for w in HIGH_WORDS):
        return "high"
    return "normal"


def team_for(category: str, product: ProductSnapshot | None) -> str:
    if category in CATEGORY_TEAM:
        return CATEGORY_TEAM[category]
    return product.default_team_id if product else FALLBACK_TEAM


def _subject_line(intake: MessageIntake) -> str:
    first = intake.subject.strip() or next((ln.strip() for ln in intake.body.splitlines() if ln.strip()), "")
    return " ".join(first.split()) or "(no subject)"


def propose(intake: MessageIntake, context: TriageContext) -> TriageProposal:
    """The offline proposer: the same typed proposal a model would return, from rules."""
    dup = find_duplicate(intake, context.open_tickets)
    subject = _subject_line(intake)
    if dup is not None:
        # A message that joins a ticket is described by that ticket; appending never re-triages it.
        # (A ticket filed by hand may carry a label outside ours: then the message's own rules apply.)
        t = context.open_ticket(dup.ticket_id)
        assert t is not None
        category = t.category if t.category in CATEGORIES else categorize(intake.text)
        priority = t.priority if t.priority in PRIORITIES else prioritize(intake.text, category)
        return TriageProposal(
            category=category, priority=priority, product_id=t.product_id, team_id=t.team_id,  # type: ignore[arg-type]
            summary=f"Follow-up on {t.ticket_id}: {subject}"[:160], duplicate_of=t.ticket_id,
            rationale=(f"{'the subject names ' + t.ticket_id if dup.by == 'reference' else 'the subject matches'} "
                       f"an open ticket of the same requester ({t.subject!r}, similarity {dup.score})"))
    product = identify_product(intake, context.products)
    category = categorize(intake.text)
    priority = prioritize(intake.text, category)
    label = category.replace("_", " ")
    return TriageProposal(
        category=category, priority=priority, product_id=product and product.product_id,  # type: ignore[arg-type]
        team_id=team_for(category, product),
        summary=f"{label.capitalize()}{' in ' + product.name if product else ''}: {subject}"[:160],
        duplicate_of=None,
        rationale=(f"keywords say {label} at {priority} priority about "
                   f"{product.name if product else 'no identifiable product'}; no open ticket of the requester "
                   f"has a subject within similarity {SIMILARITY_THRESHOLD}"))
