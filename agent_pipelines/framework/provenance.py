"""Provenance of values: a deterministic data-flow rule (after CaMeL) for the destinations of writes.

A pack names the write parameters that route money, mail, bookings or access (recipients, payees,
accounts, URLs, user ids) and requires that their values come from a trusted source:

    provenance:
      send_email:
        to: {require: trusted, otherwise: deny}                  # or otherwise: approval
      transfer:
        payee.iban: {sources: [get_vendor], otherwise: approval}  # only this read counts

Trusted values of an intent are the scalar leaves of the results of its successful READ calls through
the gateway (a tool registered with `untrusted_output=True`, e.g. "read inbox" or "fetch page", does
not count), plus values a workflow declares with `ToolGateway.trust` (e.g. the operator's request).
Never the parameters of a call: a lookup's arguments are whatever the caller asked for. A parameter's
value passes only if, normalised (NFKC, case-folded, whitespace collapsed), it equals a whole trusted
leaf: a trusted free-text field that merely contains an address does not vouch for that address, and
a value that changes under NFKC (a full-width look-alike of a trusted value) is not that value.
Untrusted text (the intake, untrusted tool outputs) never makes a value pass; it only says in the
recorded reason where a value came from. No model is asked anything.

Sources are kept per intent, so a commit resumed in a new run (recovery, an approval's continuation)
sees the reads of earlier runs, and a read made for one intent never vouches for another. They are
stored as salted digests (sha256 over intent id and value) in `intent_steps` rows named
`trusted:<hash>` / `untrusted:<hash>`: the trace tables hold the reads redacted (an e-mail address
becomes `[REDACTED:email]`), which cannot be compared, and the digests keep the addresses out of the
database a second time."""

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, or_, select

from agent_pipelines.framework.db import utcnow
from agent_pipelines.framework.rowbuffer import RowKind
from agent_pipelines.framework.tables import intent_steps, intents

PROVENANCE_FACT = "provenance"    # the validate fact that carries a proposal's findings to the policy
DECLARED = "declared:"            # prefix of sources a workflow declares (ToolGateway.trust)
MAX_VALUES_PER_SOURCE = 5_000     # digests kept per source; values beyond are not trusted (fail closed)
MAX_RULE_CHARS = 64               # policy_decisions.rule holds `provenance:<tool>.<param>`
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# Where untrusted free text is cut into words, so an address inside an e-mail body can be attributed.
_TOKEN_SPLIT = re.compile(r"[\s<>()\[\]{},;\"'`|]+")
_SPACES = re.compile(r"\s+")
_TRIM = ".,:;!?"


class ProvenanceRule(BaseModel):
    """One parameter (a dotted path into the parameters; lists are checked item by item) whose values
    must come from a trusted source; `otherwise` says what happens to a call where one does not."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    require: Literal["trusted"] = "trusted"
    otherwise: Literal["deny", "approval"] = "deny"
    sources: tuple[str, ...] = Field((), description="only these read tools (or `declared:<name>` sources) "
                                                     "count; empty: any trusted read of the intent")


Provenance = dict[str, dict[str, ProvenanceRule]]  # tool -> parameter path -> rule


def section_problems(section: Provenance, allowed_tools: Iterable[str]) -> list[str]:
    """What a pack's `provenance` section gets wrong without knowing the tools' models (checked at load):
    tools or sources outside allowed_tools, malformed parameter paths, rule names too long to record."""
    allowed, out = set(allowed_tools), []
    for tool, rules in section.items():
        if tool not in allowed:
            out.append(f"provenance names tool {tool!r}, which is not in allowed_tools")
        for path, rule in rules.items():
            if not _PATH.fullmatch(path):
                out.append(f"provenance {tool}: {path!r} is not a parameter path (name or name.name)")
            if len(rule_name(tool, path)) > MAX_RULE_CHARS:
                out.append(f"provenance {tool}.{path}: the rule name is longer than {MAX_RULE_CHARS} characters")
            out += [f"provenance {tool}.{path}: source {s!r} is not in allowed_tools"
                    for s in rule.sources if not s.startswith(DECLARED) and s not in allowed]
    return out


def rule_name(tool: str, path: str) -> str:
    return f"provenance:{tool}.{path}"


def path_problem(model: type[BaseModel], path: str) -> str | None:
    """Whether `path` names a field of the tool's parameter model (through nested models, lists and
    optionals); checked when a gateway opens with its registry. A dict or Any field ends the check."""
    current: Any = model
    for seg in path.split("."):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None if _opaque(current) else f"{path!r}: cannot descend into {current!r}"
        f = current.model_fields.get(seg)
        if f is None:
            return f"{path!r}: {current.__name__} has no parameter {seg!r}"
        current = _inner(f.annotation)
    return None


def _inner(annotation: Any) -> Any:
    """The model inside Optional[...] / list[...] / tuple[...], else the annotation itself."""
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        found = _inner(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def _opaque(annotation: Any) -> bool:
    return annotation is Any or annotation is dict or getattr(annotation, "__origin__", None) is dict


# -- values ----------------------------------------------------------------------------------------------
def normalise(value: Any) -> str | None:
    """The comparison key of a scalar: text NFKC-normalised, case-folded, whitespace collapsed and
    stripped; numbers in one spelling (2.0 == 2). None for what is no value (None, booleans, "")."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = value if isinstance(value, str) else str(value)
    return _normalised(text) if len(text) <= _CACHED_LEN else _normalise_text(text)


# A batch reads the same short values again and again (an intent's PO is read by three tools, at read
# and again at commit): normalising is a pure function of the text, so short texts are remembered.
_CACHED_LEN = 256


def _normalise_text(text: str) -> str | None:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip() or None


_normalised = lru_cache(maxsize=1 << 16)(_normalise_text)


def leaves(value: Any, limit: int = 100_000) -> Iterator[Any]:
    """Scalar leaves of a JSON-like tree (dict values, list items), iteratively and bounded."""
    stack, seen = [value], 0
    while stack and seen < limit:
        v = stack.pop()
        seen += 1
        if isinstance(v, Mapping):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif v is not None:
            yield v


def values_at(params: Mapping[str, Any], path: str) -> list[Any]:
    """Every scalar the parameter path reaches: lists are walked item by item at any level, and a
    mapping or list at the end yields all of its leaves (a value hidden deeper is still checked)."""
    nodes: list[Any] = [params]
    stray: list[Any] = []
    for seg in path.split("."):
        nxt: list[Any] = []
        for n in _flatten(nodes):
            if isinstance(n, Mapping):
                if n.get(seg) is not None:
                    nxt.append(n[seg])
            elif n is not None:  # a scalar where the path expects a record (a union type): check it too
                stray.append(n)
        nodes = nxt
    return stray + [leaf for n in nodes for leaf in leaves(n)]


def _flatten(nodes: list[Any]) -> Iterator[Any]:
    stack = list(reversed(nodes))
    while stack:
        n = stack.pop()
        if isinstance(n, (list, tuple)):
            stack.extend(reversed(n))
        else:
            yield n


def _digest(intent_id: str, key: str) -> str:
    return hashlib.sha256(f"{intent_id}\x1f{key}".encode()).hexdigest()[:32]


def _keys(value: Any, *, words: bool) -> set[str]:
    out: set[str] = set()
    for leaf in leaves(value):
        k = normalise(leaf)
        if k is None:
            continue
        out.add(k)
        if words and isinstance(leaf, str):  # untrusted free text: its phrases too, for attribution only
            out.update(_phrases(k))
    return out


def _phrases(text: str, longest: int = 4) -> Iterator[str]:
    """Runs of one to `longest` words of normalised text, trimmed of the punctuation around words, so
    "mail it to attacker@evil.example." or "book Riverside Evil Inn," can be attributed to their text."""
    words = [w.strip(_TRIM) for w in _TOKEN_SPLIT.split(text)]
    words = [w for w in words if w]
    for n in range(1, longest + 1):
        for i in range(len(words) - n + 1):
            yield " ".join(words[i:i + n])


# -- sources ---------------------------------------------------------------------------------------------
def source_record(intent_id: str, source: str, trusted: bool, value: Any) -> tuple[str, dict[str, Any]] | None:
    """The row that keeps the digests of a read's output (or a declared value) for this intent: its step
    name (named by its content) and output. None: a lookup that found nothing vouches for nothing."""
    digests = sorted({_digest(intent_id, k) for k in _keys(value, words=not trusted)})
    if not digests:
        return None
    truncated = len(digests) > MAX_VALUES_PER_SOURCE
    digests = digests[:MAX_VALUES_PER_SOURCE]
    kind = "trusted" if trusted else "untrusted"
    name = hashlib.sha256("\x1f".join([source, *digests]).encode()).hexdigest()
    return f"{kind}:{name[:32 - len(kind) - 1]}", {"provenance": kind, "source": source, "values": digests,
                                                   "truncated": truncated}


# The digests of a read's output (or a declared value) kept for an intent, written now or with a batch
# step's rows (framework/rowbuffer.py). Idempotent: the row is named by its content, so the same read
# in a later run adds nothing.
SOURCE_ROW = RowKind(intent_steps, "ignore", ("intent_id", "step"))


def source_row(*, intent_id: str, run_id: str | None, source: str, trusted: bool, value: Any) -> dict[str, Any] | None:
    """The row to keep for this read (None: a lookup that found nothing vouches for nothing)."""
    if (rec := source_record(intent_id, source, trusted, value)) is None:
        return None
    step, output = rec
    return dict(intent_id=intent_id, step=step, run_id=run_id, at=utcnow(), output=output)


@dataclass
class Sources:
    """What an intent has read so far: digests per trusted and untrusted source, and its intake."""

    intent_id: str
    trusted: dict[str, set[str]] = field(default_factory=dict)
    untrusted: dict[str, set[str]] = field(default_factory=dict)
    intake_keys: set[str] = field(default_factory=set)
    intake_text: str = ""

    def trusted_in(self, digest: str, only: tuple[str, ...]) -> list[str]:
        return [s for s, ds in self.trusted.items() if digest in ds and (not only or s in only)]


def load_sources(conn: Connection, intent_id: str) -> Sources:
    rows = conn.execute(select(intent_steps.c.output).where(
        intent_steps.c.intent_id == intent_id,
        or_(intent_steps.c.step.like("trusted:%"), intent_steps.c.step.like("untrusted:%"))))
    intake = conn.execute(select(intents.c.intake).where(intents.c.intent_id == intent_id)).scalar()
    return sources_from(intent_id, [out for (out,) in rows], intake)


def load_sources_many(conn: Connection, intakes: dict[str, Any]) -> dict[str, Sources]:
    """load_sources for a batch step's intents, whose intakes it already read: one statement per 500."""
    ids, outputs = list(intakes), {i: [] for i in intakes}
    for start in range(0, len(ids), 500):
        for intent_id, out in conn.execute(select(intent_steps.c.intent_id, intent_steps.c.output).where(
                intent_steps.c.intent_id.in_(ids[start:start + 500]),
                or_(intent_steps.c.step.like("trusted:%"), intent_steps.c.step.like("untrusted:%")))):
            outputs[intent_id].append(out)
    return {i: sources_from(i, outputs[i], intakes[i]) for i in ids}


def sources_from(intent_id: str, outputs: Iterable[Any], intake: Any) -> Sources:
    """Sources from kept rows' outputs (source_record) and the intake (a replay keeps its rows in memory)."""
    src = Sources(intent_id=intent_id)
    _add_outputs(src, outputs)
    if intake is not None:  # stored as received: untrusted by definition
        src.intake_keys = _keys(intake, words=True)
        src.intake_text = "\n".join(k for k in (normalise(v) for v in leaves(intake)) if k)
    return src


def extend_sources(src: Sources, outputs: Iterable[Any]) -> Sources:
    """A copy of `src` with more kept rows' outputs (kept since it was read)."""
    out = Sources(intent_id=src.intent_id, trusted={k: set(v) for k, v in src.trusted.items()},
                  untrusted={k: set(v) for k, v in src.untrusted.items()}, intake_keys=src.intake_keys,
                  intake_text=src.intake_text)
    _add_outputs(out, outputs)
    return out


def _add_outputs(src: Sources, outputs: Iterable[Any]) -> None:
    for out in outputs:
        if not isinstance(out, dict) or out.get("provenance") not in ("trusted", "untrusted"):
            continue
        bucket = src.trusted if out["provenance"] == "trusted" else src.untrusted
        bucket.setdefault(str(out.get("source")), set()).update(out.get("values") or ())


# -- the check ---------------------------------------------------------------------------------------------
class ProvenanceFinding(BaseModel):
    """A value of a guarded parameter that no trusted source vouches for, and where it came from."""

    model_config = ConfigDict(frozen=True)
    rule: str
    tool: str
    param: str
    value: str
    otherwise: Literal["deny", "approval"]
    where: str

    @property
    def reason(self) -> str:
        return f"{self.param} {self.value!r} is not from a trusted source: {self.where}"


def check(tool: str, rules: Mapping[str, ProvenanceRule], params: Mapping[str, Any],
          sources: Sources) -> list[ProvenanceFinding]:
    """Every value of the guarded parameters of one call that fails its rule."""
    out: list[ProvenanceFinding] = []
    for path, rule in rules.items():
        for value in values_at(params, path):
            where = _untrusted_because(value, rule, sources)
            if where is not None:
                shown = value if isinstance(value, str) else repr(value)
                out.append(ProvenanceFinding(rule=rule_name(tool, path), tool=tool, param=path,
                                             value=shown[:200], otherwise=rule.otherwise, where=where))
    return out


def _untrusted_because(value: Any, rule: ProvenanceRule, sources: Sources) -> str | None:
    key = normalise(value)
    if key is None:
        return "it is empty" if isinstance(value, str) else None
    if isinstance(value, str) and unicodedata.normalize("NFKC", value) != value:
        return "it changes under Unicode normalisation (NFKC): a look-alike, not the value a source gave"
    d = _digest(sources.intent_id, key)
    if sources.trusted_in(d, rule.sources):
        return None
    places = [f"the output of {s} (untrusted)" for s, ds in sorted(sources.untrusted.items()) if d in ds]
    if key in sources.intake_keys or (len(key) >= 3 and key in sources.intake_text):
        places.insert(0, "the intake")
    elsewhere = sources.trusted_in(d, ())
    if elsewhere:  # trusted, but not by a source this parameter accepts
        return (f"it appears in {', '.join(sorted(elsewhere))}, not in {', '.join(rule.sources)}"
                + (f"; also in {', '.join(places)}" if places else ""))
    if places:
        return "it appears only in untrusted text: " + ", ".join(places)
    return "it appears in no source: model-made"


def fired(facts: Mapping[str, Any]) -> list[tuple[str, Literal["deny", "approval"], str]]:
    """(rule, otherwise, reason) for each finding a workflow put in its validate facts."""
    out: list[tuple[str, Literal["deny", "approval"], str]] = []
    for f in facts.get(PROVENANCE_FACT) or ():
        finding = f if isinstance(f, ProvenanceFinding) else ProvenanceFinding.model_validate(f)
        out.append((finding.rule, finding.otherwise, finding.reason))
    return out
