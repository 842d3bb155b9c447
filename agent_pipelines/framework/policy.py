"""Policy packs: which tools a workflow may call, and which proposals are allowed, sent to a human
or denied. Loaded from a versioned YAML file; a broken file fails at load, never silently allows."""

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_pipelines.framework import provenance as prov
from agent_pipelines.framework.notifications import NotificationsPolicy
from agent_pipelines.framework.safe_data import MAX_PACK_CHARS, load_yaml, tree_problem


class Decision(StrEnum):
    ALLOW = "allow"
    NEEDS_APPROVAL = "needs_approval"
    DENY = "deny"


_SEVERITY = {Decision.ALLOW: 0, Decision.NEEDS_APPROVAL: 1, Decision.DENY: 2}


class Rule(BaseModel):
    """`fact <op> value` over the facts a workflow derives from its proposal; fires `decision`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    fact: str
    op: Literal["gt", "ge", "lt", "le", "eq", "ne", "in", "not_in", "truthy"]
    value: Any = None
    decision: Literal[Decision.NEEDS_APPROVAL, Decision.DENY]
    reason: str

    def fires(self, facts: dict[str, Any]) -> bool:
        v = facts[self.fact]
        match self.op:
            case "gt": return v > self.value
            case "ge": return v >= self.value
            case "lt": return v < self.value
            case "le": return v <= self.value
            case "eq": return v == self.value
            case "ne": return v != self.value
            case "in": return v in self.value
            case "not_in": return v not in self.value
            case "truthy": return bool(v)
        raise AssertionError(self.op)


class PolicyDecision(BaseModel, frozen=True):
    decision: Decision
    rule: str
    reasons: tuple[str, ...]
    observed: dict[str, Any]
    policy_digest: str


class SecondApproval(BaseModel):
    """Two distinct approvers when `fact` >= `value` (e.g. payments above the second-signature amount)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    fact: str
    value: float


class ApprovalPolicy(BaseModel):
    """Who may decide an approval request of this workflow, and how many must."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    ttl_hours: float = Field(72.0, gt=0)
    approvers: dict[str, tuple[str, ...]] = Field(default_factory=dict, description="name -> roles")
    allowed_roles: tuple[str, ...] = ()
    requester_may_approve: bool = False
    second_approval: SecondApproval | None = None
    required_for_tools: tuple[str, ...] = Field((), description="any change made with these tools needs approval")

    def roles_of(self, who: str) -> tuple[str, ...]:
        return self.approvers.get(who, ())

    def may_decide(self, who: str) -> bool:
        return any(r in self.allowed_roles for r in self.roles_of(who))

    def required_approvals(self, facts: dict[str, Any]) -> int:
        sa = self.second_approval
        return 2 if sa is not None and float(facts.get(sa.fact, 0) or 0) >= sa.value else 1


class Mode(StrEnum):
    """Rollout modes, pinned per run (tag agent_pipelines/mode)."""

    READ_ONLY = "read_only"  # everything but the write, which is recorded as "would write"
    SHADOW = "shadow"        # writes go to the shadow table; a report compares them with what humans did
    LIMITED = "limited"      # only low-impact writes land; a high-impact change is held for approval
    FULL = "full"


def writes_land(mode: Mode) -> bool:
    """Whether writes reach the system of record in this mode (read_only and shadow only record them)."""
    return mode not in (Mode.READ_ONLY, Mode.SHADOW)


# Control characters a string parameter may not carry unless its constraint allows them: C0 except
# TAB, DEL, and the Unicode line/paragraph separators. `multiline` allows line breaks (CR, LF, U+2028,
# U+2029); `allow_control` allows all of them except NUL, which no parameter may carry.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\u2028\u2029]")
_LINE_BREAKS = frozenset("\r\n\u2028\u2029")


# A plain mailbox name: no routing tricks (`%`, `!`), quotes, spaces or display names.
_LOCAL_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class Constraint(BaseModel):
    """Limits on one tool parameter, checked by the gateway on every call (a list value: on each item).

    Presence: a parameter with a check (min, max, one_of, not_one_of, email_domains, pattern,
    max_length, max_items, any_of) must be present and not null, unless `optional: true`, in which case
    an absent or null value passes and the checks apply only when a value is given. A constraint that
    only grants `multiline` / `allow_control` never requires the parameter.

    `any_of`: alternatives, each a constraint of checks only; the value (each item of a list) passes if
    it passes at least one of them, as well as this constraint's own checks.

    Strings anywhere in a parameter refuse control characters (C0 except TAB, DEL, U+2028, U+2029)
    unless `multiline: true` (allows CR, LF, U+2028, U+2029) or `allow_control: true` (allows all of
    them except NUL, which is always refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    optional: bool = Field(False, description="absent/null passes; the checks apply only to a given value")
    multiline: bool = Field(False, description="strings in this parameter may hold line breaks")
    allow_control: bool = Field(False, description="strings in this parameter may hold control characters "
                                                   "other than NUL")
    any_of: tuple["Constraint", ...] | None = Field(None, min_length=1,
                                                     description="passes if any of these alternatives passes")
    min: float | None = None
    max: float | None = None
    one_of: tuple[Any, ...] | None = None
    not_one_of: tuple[Any, ...] | None = None
    email_domains: tuple[str, ...] | None = None
    pattern: str | None = Field(None, description="the whole value must match (re.fullmatch)")
    max_length: int | None = None
    max_items: int | None = Field(None, description="for list parameters: at most this many items")

    @model_validator(mode="after")
    def _compiles(self) -> "Constraint":
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} does not compile: {exc}") from None
        for name, v in (("one_of", self.one_of), ("not_one_of", self.not_one_of)):
            problem = tree_problem(v)
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
        for alt in self.any_of or ():
            if alt.optional or alt.multiline or alt.allow_control or alt.max_items is not None:
                raise ValueError("any_of alternatives hold checks only (no optional, multiline, "
                                 "allow_control or max_items)")
        return self

    @property
    def checks(self) -> bool:
        """Whether this constraint checks values (rather than only granting multiline/allow_control)."""
        return any(getattr(self, f) is not None for f in (
            "min", "max", "one_of", "not_one_of", "email_domains", "pattern", "max_length", "max_items", "any_of"))

    def control_problem(self, value: Any) -> str | None:
        return control_problem(value, multiline=self.multiline, allow_control=self.allow_control)

    def violations(self, value: Any) -> list[str]:
        if isinstance(value, (list, tuple)):
            out = [f"{len(value)} items > max_items {self.max_items}"] if (
                self.max_items is not None and len(value) > self.max_items) else []
            return out + [v for item in value for v in self._check(item)]
        return self._check(value)

    def _check(self, v: Any) -> list[str]:
        out: list[str] = []
        if self.any_of is not None and all(alt._check(v) for alt in self.any_of):
            out.append(f"{v!r} passes none of the any_of alternatives")
        if self.min is not None or self.max is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return out + [f"{v!r} is not a number"]
            if isinstance(v, float) and not math.isfinite(v):
                return out + [f"{v!r} is not a finite number"]
            if self.min is not None and v < self.min:
                out.append(f"{v} < min {self.min:g}")
            if self.max is not None and v > self.max:
                out.append(f"{v} > max {self.max:g}")
        if self.one_of is not None and v not in self.one_of:
            out.append(f"{v!r} is not one of {list(self.one_of)}")
        if self.not_one_of is not None and v in self.not_one_of:
            out.append(f"{v!r} is forbidden")
        if self.email_domains is not None:
            local, _, domain = str(v).partition("@")
            if (not _LOCAL_PART.fullmatch(local) or "@" in domain
                    or domain.lower() not in {d.lower() for d in self.email_domains}):
                out.append(f"{v!r} is not an address in {list(self.email_domains)}")
        if self.pattern is not None and not (isinstance(v, str) and re.fullmatch(self.pattern, v)):
            out.append(f"{v!r} does not match {self.pattern!r}")
        if self.max_length is not None and len(str(v)) > self.max_length:
            out.append(f"longer than {self.max_length} characters")
        return out


def control_problem(value: Any, *, multiline: bool = False, allow_control: bool = False) -> str | None:
    """The first control character in any string (or mapping key) of a parameter value that is not
    allowed; None when there is none. Iterative and bounded like the rest of the gateway's checks."""
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            for m in _CONTROL.finditer(v):
                ch = m.group()
                if ch != "\x00" and (allow_control or (multiline and ch in _LINE_BREAKS)):
                    continue
                return f"control character {ch!r} at position {m.start()}"
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return None


Constraint.model_rebuild()


class Preconditions(BaseModel):
    """What must hold before any write: evidence present (facts non-empty), records in a given state."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    evidence: tuple[str, ...] = ()
    record_state: dict[str, Any] = Field(default_factory=dict, description="fact -> required value")


class DataHandling(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    redact_fields: tuple[str, ...] = Field((), description="field names masked in traces and logs")
    redact_for_model: bool = Field(False, description="also redact PII and secrets in what the model sees")


class Budgets(BaseModel):
    """Per-run caps. Crossing one quarantines the intent and blocks the run's further writes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    max_llm_tokens: int = Field(50_000, gt=0)
    max_cost_usd: float = Field(1.0, ge=0)
    max_tool_calls: int = Field(100, gt=0)
    max_wall_s: float = Field(900.0, gt=0, description="also the run's dagster/max_runtime tag")
    max_repeat_calls: int = Field(3, gt=0, description="the same tool with the same arguments, per run")


class Recovery(BaseModel):
    """How the recovery sweeper treats an intent whose run died or failed: bounded attempts with
    exponential backoff, then needs_attention with an escalation."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    max_attempts: int = Field(3, ge=0, description="recovery runs before the intent needs attention")
    backoff_s: float = Field(30.0, ge=0, description="wait before attempt n: backoff_s * 2**(n-1), capped")
    max_backoff_s: float = Field(900.0, ge=0)

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(attempt - 1, 0))


class HandOff(BaseModel):
    """What a workflow's hand-off may do beyond storing it. A message to someone outside the company (a
    customer) is only ever stored as a draft for a person to send, unless the pack sets this true."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    send_customer_notifications: bool = False


class Rollout(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Mode = Mode.FULL


class PolicyPack(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    workflow: str
    version: str
    allowed_tools: tuple[str, ...] = Field(description="deny by default: only these tools may be called")
    constraints: dict[str, dict[str, Constraint]] = Field(
        default_factory=dict, description="tool -> parameter -> constraint, enforced by the gateway")
    high_impact_tools: tuple[str, ...] = Field((), description="treated as high impact whatever the tool says")
    preconditions: Preconditions = Field(default_factory=Preconditions)
    rules: tuple[Rule, ...] = ()
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    data_handling: DataHandling = Field(default_factory=DataHandling)
    budgets: Budgets = Field(default_factory=Budgets)
    rollout: Rollout = Field(default_factory=Rollout)
    recovery: Recovery = Field(default_factory=Recovery)
    input_ttl_hours: float = Field(72.0, gt=0, description="how long an intent waits for a missing input")
    provenance: prov.Provenance = Field(default_factory=dict, description="tool -> parameter -> where its "
                                        "values must come from (framework/provenance.py)")
    notifications: NotificationsPolicy | None = Field(None, description="who is told of a new approval "
                                                      "request, how, and what it may say (framework/notifications.py)")
    hand_off: HandOff = Field(default_factory=HandOff, description="what a hand-off may send (default: nothing)")

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        """No NaN or infinity in any setting (rule values, thresholds, constraints, budgets), no
        non-string keys, bounded nesting: checked over the raw data before the fields are."""
        problem = tree_problem(data)
        if problem is not None:
            raise ValueError(problem)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "PolicyPack":
        unknown = sorted((set(self.constraints) | set(self.high_impact_tools)
                          | set(self.approval.required_for_tools)) - set(self.allowed_tools))
        if unknown:
            raise ValueError(f"constraints/high_impact_tools/required_for_tools name tools that are not "
                             f"in allowed_tools: {unknown}")
        problems = prov.section_problems(self.provenance, self.allowed_tools)
        problems += self.notifications.problems(self.approval.approvers) if self.notifications else []
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def load(cls, path: str | Path) -> "PolicyPack":
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PolicyError(f"cannot read policy pack {path}: {exc}") from exc
        return cls.from_yaml(text, source=str(path))

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<text>") -> "PolicyPack":
        """Parse and validate a pack. Any malformed pack raises PolicyError and nothing else: YAML
        anchors/aliases, nesting deeper than MAX_PACK_DEPTH, text over MAX_PACK_CHARS, NaN/infinity in
        any setting, unknown keys, wrong types."""
        if not isinstance(text, str):
            raise PolicyError(f"policy pack {source} is not text")
        if len(text) > MAX_PACK_CHARS:
            raise PolicyError(f"policy pack {source} is larger than {MAX_PACK_CHARS} characters")
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"cannot parse policy pack {source}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - e.g. ValueError from a bad !!timestamp
            raise PolicyError(f"cannot parse policy pack {source}: {type(exc).__name__}: {exc}") from None
        try:
            pack = cls.model_validate(data)
            pack.digest  # noqa: B018 - a pack whose digest cannot be computed is not loadable
            return pack
        except Exception as exc:  # noqa: BLE001 - every malformed pack is a PolicyError
            raise PolicyError(f"invalid policy pack {source}: {exc}") from None

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> "PolicyPack":
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("digest", None)  # a changed copy is another pack: its digest is computed anew
        return copied

    @functools.cached_property
    def digest(self) -> str:  # the pack is frozen: computed once (a gateway per intent and step reads it)
        data = self.model_dump(mode="json")
        for section in ("provenance", "notifications"):
            if not data[section]:  # packs without the section keep the digest they had before it existed
                del data[section]
        if data["hand_off"] == HandOff().model_dump(mode="json"):  # likewise for the default hand-off
            del data["hand_off"]
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def allows_tool(self, tool: str) -> bool:
        return tool in self.allowed_tools

    def param_violations(self, tool: str, params: dict[str, Any]) -> list[str]:
        """Each constraint the parameters break. A constrained parameter that is absent or null breaks
        it too, unless the constraint is `optional` (or only grants multiline/allow_control)."""
        out: list[str] = []
        for name, c in self.constraints.get(tool, {}).items():
            if name not in params or params[name] is None:
                if c.checks and not c.optional:
                    out.append(f"{name}: missing (constrained)")
                continue
            out += [f"{name}: {v}" for v in c.violations(params[name])]
        return out

    def control_violations(self, tool: str, params: dict[str, Any]) -> list[str]:
        """Control characters in string parameters (values and keys, at any depth) that the parameter's
        constraint does not allow."""
        out: list[str] = []
        constraints = self.constraints.get(tool, {})
        for name, value in params.items():
            c = constraints.get(name)
            problem = c.control_problem(value) if c is not None else control_problem(value)
            if problem is not None:
                out.append(f"{name}: {problem}")
        return out

    def decide(self, facts: dict[str, Any], *, planned: Sequence[tuple[str, bool]] = (),
               mode: Mode = Mode.FULL) -> PolicyDecision:
        """Evaluate the preconditions and every rule; the most severe decision wins. A missing fact
        denies (fail closed). `planned` is (tool, high_impact) for each write the change would make:
        tools listed in approval.required_for_tools, and high-impact tools in limited mode, need a human."""
        digest = self.digest
        evidence_missing = [f for f in self.preconditions.evidence if facts.get(f) in (None, "", [], {})]
        if evidence_missing:
            return PolicyDecision(decision=Decision.DENY, rule="evidence_missing",
                                  reasons=(f"evidence required before any write is missing: {evidence_missing}",),
                                  observed={f: facts.get(f) for f in self.preconditions.evidence},
                                  policy_digest=digest)
        wrong_state = {f: {"required": v, "seen": facts.get(f)}
                       for f, v in self.preconditions.record_state.items() if facts.get(f) != v}
        if wrong_state:
            return PolicyDecision(decision=Decision.DENY, rule="record_state",
                                  reasons=(f"records are not in the state a write requires: {wrong_state}",),
                                  observed=wrong_state, policy_digest=digest)
        missing = sorted({r.fact for r in self.rules if r.fact not in facts})
        if missing:
            return PolicyDecision(decision=Decision.DENY, rule="missing_fact",
                                  reasons=(f"policy needs facts {missing} the workflow did not provide",),
                                  observed={}, policy_digest=digest)
        fired: list[tuple[str, Decision, str]] = [(r.name, r.decision, r.reason) for r in self.rules if r.fires(facts)]
        observed = {r.fact: facts[r.fact] for r in self.rules}
        gated = sorted({t for t, _ in planned if t in self.approval.required_for_tools})
        if gated:
            fired.append(("tool_requires_approval", Decision.NEEDS_APPROVAL,
                          f"every change made with {gated} needs a human approver"))
        # Findings of the provenance rule over the planned writes (ToolGateway.provenance_facts).
        fired += [(rule, Decision.DENY if otherwise == "deny" else Decision.NEEDS_APPROVAL, why)
                  for rule, otherwise, why in prov.fired(facts)]
        held = sorted({t for t, high in planned if high or t in self.high_impact_tools})
        if mode == Mode.LIMITED and held:
            fired.append(("limited_mode_holds_high_impact", Decision.NEEDS_APPROVAL,
                          f"limited mode: high-impact writes {held} are held for a human"))
        if facts.get(prov.PROVENANCE_FACT):
            observed[prov.PROVENANCE_FACT] = facts[prov.PROVENANCE_FACT]
        if planned:
            observed["planned_tools"] = [t for t, _ in planned]
        if not fired:
            return PolicyDecision(decision=Decision.ALLOW, rule="within_policy", reasons=(),
                                  observed=observed, policy_digest=digest)
        top = max(_SEVERITY[d] for _, d, _ in fired)
        winners = [(n, d, r) for n, d, r in fired if _SEVERITY[d] == top]
        return PolicyDecision(decision=winners[0][1], rule=winners[0][0],
                              reasons=tuple(f"{n}: {r}" for n, _, r in winners),
                              observed=observed, policy_digest=digest)


class PolicyError(ValueError):
    pass
