"""Redaction applied to everything the trace stores or logs (one place; the tracer calls it).

Findings are masked as `[REDACTED:<label>]` (labels: `LABELS`). Detectors, all offline:

* secrets: detect-secrets' specific plugins (AWS, Azure storage, GitHub, GitLab, JWT, Slack, Stripe,
  Twilio, SendGrid, npm, PyPI, OpenAI, Discord, Mailchimp, Square, IBM, SoftLayer, Artifactory,
  Cloudant, Telegram), its basic-auth URL detector (only the password is masked), its keyword detector
  (`password = "..."`, `api_key: ...`; like the plugin, an unquoted value is masked to the end of its
  line) and its private-key headers; plus our own regexes for whole PEM
  private-key blocks, OpenAI-style `sk-`/`pk-`/`rk-` keys, `Bearer <token>` and `*token=<value>`.
  The high-entropy plugins are deliberately not used: traces are full of sha256 digests and hex ids
  that must stay readable.
* PII: e-mail addresses (regex), phone numbers (`phonenumbers`, leniency VALID, default region US),
  card numbers (Luhn-valid only, `stdnum.luhn`), IBANs (checksum-valid only, `stdnum.iban`) and US
  social security numbers (`stdnum.us.ssn`-valid: written 123-45-6789 or 123 45 6789, or as nine bare
  digits right after "SSN" / "social security").

`redact` also masks dict values by key: secret-looking key names (`SECRET_KEYS`) and caller-named
`fields` (policy fields such as `personal_email`).

Cost: `redact` runs on every trace row and log line. A cheap gate skips strings that cannot hold a
finding, every detector has its own literal pre-check (the keyword detector's regexes only run where a
keyword occurs, phonenumbers only sees phone-shaped digit runs), and the libraries are imported and the
plugin instances built lazily, once, on first use.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from functools import lru_cache
from typing import Any

__all__ = ["LABELS", "SECRET_KEYS", "redact", "redact_text"]

# Keys whose string values are secrets: `access_token`, `api_key`, `password`; not `prompt_tokens`.
SECRET_KEYS = re.compile(r"(?i)(^|[_-])(password|passwd|secret|token|api[_-]?key|authorization|credentials?)$")

# Labels `redact_text` can produce, in merge priority: overlapping findings are masked as one span that
# carries the earliest of their labels. (`redact` adds `secret` and `field` for dict values.)
LABELS: tuple[str, ...] = (
    "private_key", "aws_key", "azure_key", "github_token", "gitlab_token", "slack_token", "stripe_key",
    "twilio_key", "sendgrid_key", "npm_token", "pypi_token", "discord_token", "mailchimp_key",
    "square_token", "ibm_key", "softlayer_key", "artifactory_token", "cloudant_key", "telegram_token",
    "jwt", "api_key", "url_password", "bearer", "keyword_secret", "card", "iban", "ssn", "email", "phone",
)
_PRIORITY = {label: i for i, label in enumerate(LABELS)}

_MARKER = re.compile(r"\[REDACTED:[a-z_]+\]")

Span = tuple[int, int, str]  # start, end, label

# ---------------------------------------------------------------------------------------------------
# Our own patterns.

_PEM_BLOCK = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----", re.S)
# A BEGIN line without its END (e.g. a truncated document): mask it and the base64 body that follows.
_PEM_BEGIN = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:(?:[ \t]*(?:\r?\n|\\n)[ \t]*|[ \t]+)(?:[A-Za-z][A-Za-z-]*: [^\n]*|[A-Za-z0-9+/=]{8,}))*")
_API_KEY = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}\b")
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{12,}")
_URL_PASSWORD = re.compile(r"(?<=://)[^/\s:@]+:([^/\s@]+)(?=@)")
# `access_token=...`, `x-auth-token: ...` (matched at each "token"): a value with a letter and a digit.
_TOKEN_VALUE = re.compile(
    r"token[\"']?\s*[:=]\s*[\"']?"
    r"((?=[A-Za-z0-9._~+/\-]*[A-Za-z])(?=[A-Za-z0-9._~+/\-]*\d)[A-Za-z0-9._~+/\-]{12,}=*)", re.I)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
_USERINFO = re.compile(r"[\s/@]")
# Card numbers as written: unbroken, in groups of four (one kind of separator) or Amex's 4-6-5; the
# first digit is a card network's (2-6: Mastercard, Amex, Diners, JCB, Visa, Discover, UnionPay,
# Maestro), which also keeps epoch-millisecond timestamps (1...) out.
_CARD = re.compile(r"(?<![\w\-.])(?=[2-6])"
                   r"(?:\d{13,19}|\d{4}([ \-])\d{4}(?:\1\d{4}){1,2}(?:\1\d{1,4})?|\d{4}([ \-])\d{6}\2\d{4,5})"
                   r"(?![\w\-]|[.,]\d)")
_CARD_GATE = re.compile(r"\d(?:[ \-]?\d){12}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
# A run of 7-19 digits shaped like a phone number, not glued to letters, ids or decimals. Only these
# candidates (with a little context) are handed to phonenumbers, which is slow on whole paragraphs.
_PHONE_CANDIDATE = re.compile(r"(?<![\w+\-./])(?:\+|\()?\d(?:[ \t().\-/]{0,3}\d){6,18}\)?(?![\w\-]|[.,]\d)")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DECIMAL = re.compile(r"\d+[.,]\d{1,2}")
# An unformatted run of digits (no '+', no separator) is an id or an amount unless a word before it
# says it is a phone number.
# A US SSN: grouped 3-2-4 (dash or space), or nine bare digits right after an SSN wording.
_SSN = re.compile(r"(?<![\w\-])\d{3}([- ])\d{2}\1\d{4}(?![\w\-])")
_SSN_BARE = re.compile(r"(?i)(?:\bssn|social\s+security(?:\s+(?:number|no\.?|#))?)\W{0,6}(\d{9})(?!\d)")
_PHONE_WORDS = ("phone", "tel", "mobile", "cell", "call", "fax", "sms", "whatsapp", "contact", "dial")
_NON_DIGIT = re.compile(r"\D")

# Gate: a string with none of these (no digit, '@', ':', '=', ';', token-sized run, PEM header,
# `Bearer`, Artifactory prefix) cannot hold a finding and skips every detector.
_GATE_CHARS = re.compile(r"[\d@:=;]")
_LONG_RUN = re.compile(r"[A-Za-z0-9_\-]{19,}")  # the shortest token we look for: `sk-` + 16
_GATE_WORDS = ("-----", "AKC", "AP")
_GATE_LOWER_WORDS = ("bearer", "putty")

# ---------------------------------------------------------------------------------------------------
# detect-secrets plugins: module, class, label, hints (the plugin's regexes only run on a string that
# contains one of them; `ci`: case-insensitively), the longest run of [A-Za-z0-9_-] every match of the
# plugin contains (0: no such bound; checked before the hints) and which part of a match is the secret:
# the whole match ("match", trimmed of delimiters) or its first non-empty group ("group").
_PLUGINS: tuple[tuple[str, str, str, tuple[str, ...], bool, int, str], ...] = (
    # module, class, label, hints, ci, min_run, mask
    ("aws", "AWSKeyDetector", "aws_key", ("A3T", "ABIA", "ACCA", "AKIA", "ASIA", "aws"), True, 0, "group"),
    ("azure_storage_key", "AzureStorageKeyDetector", "azure_key", ("AccountKey=",), False, 0, "match"),
    ("github_token", "GitHubTokenDetector", "github_token", ("gh",), False, 40, "match"),
    ("gitlab_token", "GitLabTokenDetector", "gitlab_token", ("gl", "GR1348941"), False, 25, "match"),
    ("jwt", "JwtTokenDetector", "jwt", ("eyJ",), False, 0, "match"),
    ("slack", "SlackDetector", "slack_token", ("xox", "hooks.slack.com"), True, 0, "match"),
    ("stripe", "StripeDetector", "stripe_key", ("k_live_",), False, 32, "match"),
    ("twilio", "TwilioKeyDetector", "twilio_key", ("AC", "SK"), False, 34, "match"),
    ("sendgrid", "SendGridDetector", "sendgrid_key", ("SG.",), False, 43, "match"),
    ("npm", "NpmDetector", "npm_token", ("_authToken",), False, 0, "group"),
    ("pypi_token", "PypiTokenDetector", "pypi_token", ("pypi-",), False, 70, "match"),
    ("openai", "OpenAIDetector", "api_key", ("T3BlbkFJ",), False, 0, "match"),
    ("discord", "DiscordBotTokenDetector", "discord_token", ("M", "N", "O"), False, 27, "match"),
    ("mailchimp", "MailchimpDetector", "mailchimp_key", ("-us",), False, 36, "match"),
    ("square_oauth", "SquareOAuthDetector", "square_token", ("sq0csp-",), False, 0, "match"),
    ("ibm_cloud_iam", "IbmCloudIamDetector", "ibm_key", ("key", "pwd", "pass", "token"), True, 44, "group"),
    ("ibm_cos_hmac", "IbmCosHmacDetector", "ibm_key", ("secret",), True, 48, "group"),
    ("softlayer", "SoftlayerDetector", "softlayer_key", ("softlayer", "sl"), True, 64, "group"),
    ("artifactory", "ArtifactoryDetector", "artifactory_token", ("AKC", "AP"), False, 0, "match"),
    ("cloudant", "CloudantDetector", "cloudant_key", ("cl",), True, 24, "group"),
    ("telegram_token", "TelegramBotTokenDetector", "telegram_token", (":",), False, 35, "match"),
    ("basic_auth", "BasicAuthDetector", "url_password", ("://",), False, 0, "group"),
    ("private_key", "PrivateKeyDetector", "private_key", ("PRIVATE KEY", "PuTTY-User-Key-File"), False, 0, "match"),
)
# Every string one of those plugins matches has a `_LONG_RUN` or one of these.
_PLUGIN_LITERALS = ("://", "eyJ", "AccountKey=", "_authToken", "AKC", "AP", "PRIVATE KEY", "PuTTY")
_PLUGIN_LOWER_LITERALS = ("xox", "hooks.slack", "aws")
# Characters some plugin regexes consume around the secret (e.g. Artifactory's `(?:\s|=|:|"|^)`).
_STRIP = " \t\r\n\"'=:"
_JWT_TAIL = re.compile(r"[A-Za-z0-9_\-+/=.]*")


class _Plugin:
    __slots__ = ("label", "hint", "min_run", "mask", "regexes", "valid")

    def __init__(self, label: str, hints: tuple[str, ...], ci: bool, min_run: int, mask: str,
                 regexes: Iterable[re.Pattern[str]], valid: Callable[[str], bool] | None) -> None:
        self.label, self.min_run, self.mask, self.regexes, self.valid = label, min_run, mask, tuple(regexes), valid
        self.hint = re.compile("|".join(map(re.escape, hints)), re.I if ci else 0)


class _Keyword:
    """detect-secrets' keyword detector, run as its regexes anchored where a denylisted word occurs."""

    __slots__ = ("followed", "preceded", "words")

    def __init__(self) -> None:
        from detect_secrets.plugins import keyword as kw

        # `<keyword> = <secret>` forms, anchored at the keyword; group = the secret.
        self.followed = tuple((getattr(kw, name), group) for name, group in (
            ("FOLLOWED_BY_COLON_EQUAL_SIGNS_REGEX", 4),
            ("FOLLOWED_BY_COLON_REGEX", 4),
            ("FOLLOWED_BY_EQUAL_SIGNS_REGEX", 5),
            ("FOLLOWED_BY_ARROW_FUNCTION_SIGN_QUOTES_REQUIRED_REGEX", 4),
            ("FOLLOWED_BY_QUOTES_AND_SEMICOLON_REGEX", 3),
        ) if hasattr(kw, name))
        # `"<secret>" == <keyword>`: searched in the whole string (only if it has `==`/`!=`).
        self.preceded = tuple((getattr(kw, name), 2) for name in (
            "PRECEDED_BY_EQUAL_COMPARISON_SIGNS_QUOTES_REQUIRED_REGEX",) if hasattr(kw, name))
        # The denylist spelled out (`api_?key` -> `api_key`, `apikey`), lower-case.
        self.words = tuple(sorted({w.replace("_?", sep).lower() for w in kw.DENYLIST for sep in ("_", "")}))

    def find(self, text: str, lower: str, out: list[Span]) -> None:
        starts = set()
        for word in self.words:
            i = lower.find(word)
            while i >= 0:
                starts.add(i)
                i = lower.find(word, i + 1)
        for i in sorted(starts):
            for regex, group in self.followed:
                m = regex.match(text, i)
                if m and m.end(group) > m.start(group):
                    out.append((*m.span(group), "keyword_secret"))
        if self.preceded and ("==" in text or "!=" in text):
            for regex, group in self.preceded:
                for m in regex.finditer(text):
                    if m.end(group) > m.start(group):
                        out.append((*m.span(group), "keyword_secret"))


@lru_cache(maxsize=1)
def _detectors() -> tuple[tuple[_Plugin, ...], _Keyword]:
    """The detect-secrets plugins and keyword detector; imported and instantiated once, on first use."""
    import importlib

    plugins = []
    for module, cls_name, label, hints, ci, min_run, mask in _PLUGINS:
        try:
            cls = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls_name)
        except (ImportError, AttributeError):  # not in this detect-secrets version
            continue
        instance = cls()
        valid = instance.is_formally_valid if cls_name == "JwtTokenDetector" else None
        plugins.append(_Plugin(label, hints, ci, min_run, mask, instance.denylist, valid))
    return tuple(plugins), _Keyword()


@lru_cache(maxsize=1)
def _phone_matcher() -> Callable[[str], Iterable[Any]]:
    from phonenumbers import Leniency, PhoneNumberMatcher

    return lambda text: PhoneNumberMatcher(text, "US", leniency=Leniency.VALID)


@lru_cache(maxsize=1)
def _checksums() -> tuple[Callable[[str], bool], Callable[[str], bool], Callable[[str], bool]]:
    from stdnum import iban, luhn
    from stdnum.us import ssn

    return luhn.is_valid, iban.is_valid, ssn.is_valid


# ---------------------------------------------------------------------------------------------------
# Detectors: each appends (start, end, label) spans found in `text`.

def _private_keys(text: str, out: list[Span]) -> None:
    if "PRIVATE KEY" not in text and "PuTTY-User-Key-File" not in text:
        return
    for m in _PEM_BLOCK.finditer(text):
        out.append((*m.span(), "private_key"))
    for m in _PEM_BEGIN.finditer(text):
        out.append((*m.span(), "private_key"))
    i = text.find("PuTTY-User-Key-File")
    if i >= 0:  # a PuTTY key file: everything from its header on is key material
        out.append((i, len(text), "private_key"))


def _secrets(text: str, lower: str, out: list[Span]) -> None:
    plugins, keyword = _detectors()
    longest = max(map(len, _LONG_RUN.findall(text)), default=0)
    if longest or any(h in text for h in _PLUGIN_LITERALS) or any(h in lower for h in _PLUGIN_LOWER_LITERALS):
        for plugin in plugins:
            if plugin.min_run <= longest and plugin.hint.search(text):
                _run_plugin(plugin, text, out)
    if "=" in text or ":" in text or ";" in text:
        keyword.find(text, lower, out)
        i = lower.find("token")
        while i >= 0:
            m = _TOKEN_VALUE.match(text, i)
            if m:
                out.append((*m.span(1), "keyword_secret"))
            i = lower.find("token", i + 1)
    if "bearer" in lower:
        for m in _BEARER.finditer(text):
            out.append((*m.span(), "bearer"))
    if "k-" in text:
        for m in _API_KEY.finditer(text):
            out.append((*m.span(), "api_key"))


def _run_plugin(plugin: _Plugin, text: str, out: list[Span]) -> None:
    for regex in plugin.regexes:
        for m in regex.finditer(text):
            if plugin.mask == "group" and m.re.groups:
                start, end = m.span(next((g for g in range(1, m.re.groups + 1) if m.group(g)), 0))
            else:
                start, end = m.span()
                while start < end and text[start] in _STRIP:
                    start += 1
                while end > start and text[end - 1] in _STRIP:
                    end -= 1
            if plugin.valid is not None:  # JWT: the plugin's regex stops before the signature
                end = start + len(text[start:_JWT_TAIL.match(text, end).end()].rstrip("."))
                if not plugin.valid(text[start:end]):
                    continue
            if end > start:
                out.append((start, end, plugin.label))


def _urls_and_emails(text: str, out: list[Span]) -> None:
    if "@" not in text:
        return
    if "://" in text:
        for m in _URL_PASSWORD.finditer(text):
            out.append((*m.span(1), "url_password"))
    for m in _EMAIL.finditer(text):
        start = m.start()
        if start and text[start - 1] == ":":  # `scheme://user:password@host`: the password, not an e-mail
            scheme = text.rfind("://", 0, start)
            if scheme >= 0 and not _USERINFO.search(text, scheme + 3, start - 1):
                continue
        out.append((start, m.end(), "email"))


def _numbers(text: str, lower: str, out: list[Span]) -> None:
    luhn_valid, iban_valid, ssn_valid = _checksums()
    for m in _SSN.finditer(text):
        if ssn_valid(m.group().replace(" ", "-")):  # stdnum reads dashes, not spaces
            out.append((*m.span(), "ssn"))
    for m in _SSN_BARE.finditer(text):
        if ssn_valid(m.group(1)):
            out.append((*m.span(1), "ssn"))
    if _CARD_GATE.search(text):
        for m in _CARD.finditer(text):
            if luhn_valid(_NON_DIGIT.sub("", m.group())):
                out.append((*m.span(), "card"))
    for m in _IBAN.finditer(text):
        # The pattern may swallow a short word after a spaced IBAN: drop trailing groups until valid.
        candidate = m.group()
        while len(candidate.replace(" ", "")) >= 15:
            if iban_valid(candidate):
                out.append((m.start(), m.start() + len(candidate), "iban"))
                break
            cut = candidate.rfind(" ")
            if cut < 0:
                break
            candidate = candidate[:cut]
    matcher, taken = None, [(start, end) for start, end, _ in out]
    for m in _PHONE_CANDIDATE.finditer(text):
        raw = m.group()
        digits = len(_NON_DIGIT.sub("", raw))
        # At most 15 digits (E.164); without a leading '+' a national number of region US has 10 (11
        # with the trunk prefix 1, up to 15 after an international prefix such as 011).
        if not (7 if raw[0] == "+" else 10) <= digits <= 15 or _IPV4.fullmatch(raw) or _DECIMAL.fullmatch(raw):
            continue
        if raw.isdigit() and not any(w in lower[max(0, m.start() - 24):m.start()] for w in _PHONE_WORDS):
            continue
        if any(start <= m.start() and m.end() <= end for start, end in taken):  # already a secret/card/IBAN
            continue
        matcher = matcher or _phone_matcher()
        lo, hi = max(0, m.start() - 1), min(len(text), m.end() + 8)  # context for the matcher's checks
        for found in matcher(text[lo:hi]):
            start, end = max(lo + found.start, m.start()), min(lo + found.end, m.end())
            if start < end:
                out.append((start, end, "phone"))


def _could_hold_finding(text: str, lower: str) -> bool:
    return bool(_GATE_CHARS.search(text) or any(w in text for w in _GATE_WORDS)
                or any(w in lower for w in _GATE_LOWER_WORDS) or _LONG_RUN.search(text))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _findings(text: str) -> list[Span]:
    lower = text.lower()
    if len(lower) != len(text):  # some Unicode lower-cases to more characters: keep offsets aligned
        lower = text.translate(_ASCII_LOWER)
    if not _could_hold_finding(text, lower):
        return []
    spans: list[Span] = []
    _private_keys(text, spans)
    _secrets(text, lower, spans)
    _urls_and_emails(text, spans)
    _numbers(text, lower, spans)
    return spans


# ---------------------------------------------------------------------------------------------------
# Public API.

# Traces redact the same short values over and over (ids, dates, amounts, names: a PO read by three
# tools is traced three times), and redact_text is a pure function of its text: short texts are
# remembered. Long ones (free text, documents) are rarely repeated and would crowd the cache.
_CACHED_LEN = 256


def redact_text(text: str) -> str:
    """`text` with every finding masked as `[REDACTED:<label>]`. Idempotent: earlier masks are hidden
    from the detectors, so redacting a redacted text changes nothing."""
    if not text:
        return text
    if len(text) <= _CACHED_LEN:
        return _redact_short(text)
    return _redact_text(text)


@lru_cache(maxsize=1 << 16)
def _redact_short(text: str) -> str:
    return _redact_text(text)


@lru_cache(maxsize=4096)
def _secret_key(name: str) -> bool:
    return SECRET_KEYS.search(name) is not None


def _redact_text(text: str) -> str:
    scan = text
    if "[REDACTED:" in text:
        scan = _MARKER.sub(lambda m: "\x00" * len(m.group()), text)
    spans = _findings(scan)
    if not spans:
        return text
    # Overlapping findings become one masked span labelled by the highest-priority finding in it.
    spans.sort()
    merged: list[list[Any]] = []
    for start, end, label in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], end)
            if _PRIORITY[label] < _PRIORITY[last[2]]:
                last[2] = label
        else:
            merged.append([start, end, label])
    parts, pos = [], 0
    for start, end, label in merged:
        parts.append(text[pos:start])
        parts.append(f"[REDACTED:{label}]")
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def redact(value: Any, fields: Collection[str] = ()) -> Any:
    """Return a copy of a JSON-like value with secrets and PII masked.

    Strings go through `redact_text`. In dicts (at any depth) the value of a key named in `fields`
    (case-insensitive exact match) becomes `[REDACTED:field]` whatever its type, and a non-empty
    string under a secret-looking key (`SECRET_KEYS`) becomes `[REDACTED:secret]`; keys are kept.
    Tuples come back as lists; other values are returned unchanged."""
    if isinstance(fields, str):
        fields = (fields,)
    return _redact(value, frozenset(str(f).lower() for f in fields) if fields else frozenset())


_PLAIN = frozenset({int, float, bool, type(None)})  # returned as they are, without the isinstance chain


def _redact(value: Any, fields: frozenset[str]) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            name = k if isinstance(k, str) else str(k)
            if fields and name.lower() in fields:
                out[k] = "[REDACTED:field]"
            elif type(v) in _PLAIN:  # most values of a trace row: kept without a call
                out[k] = v
            elif isinstance(v, str) and v and (_secret_key(name) if len(name) <= 64 else SECRET_KEYS.search(name)):
                out[k] = "[REDACTED:secret]"
            else:
                out[k] = _redact(v, fields)
        return out
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _PLAIN else _redact(v, fields) for v in value]
    return value
