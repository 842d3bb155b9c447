"""Policy packs: which tools a workflow may call, and which proposals are allowed, sent to a human
or denied. Loaded from a versioned YAML file; a broken file fails at load, never silently allows."""

import hashlib
import json
import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


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

    model_config = ConfigDict(extra="forbid", frozen=True)
    fact: str
    value: float


class ApprovalPolicy(BaseModel):
    """Who may decide an approval request of this workflow, and how many must."""

    model_config = ConfigDict(extra="forbid", frozen=True)
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


# A plain mailbox name: no routing tricks (`%`, `!`), quotes, spaces or display names.
_LOCAL_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class Constraint(BaseModel):
    """Limits on one tool parameter, checked by the gateway on every call (a list value: on each item)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
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
        return self

    def violations(self, value: Any) -> list[str]:
        if isinstance(value, (list, tuple)):
            out = [f"{len(value)} items > max_items {self.max_items}"] if (
                self.max_items is not None and len(value) > self.max_items) else []
            return out + [v for item in value for v in self._check(item)]
        return self._check(value)

    def _check(self, v: Any) -> list[str]:
        out: list[str] = []
        if self.min is not None or self.max is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return [f"{v!r} is not a number"]
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

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_llm_tokens: int = Field(50_000, gt=0)
    max_cost_usd: float = Field(1.0, ge=0)
    max_tool_calls: int = Field(100, gt=0)
    max_wall_s: float = Field(900.0, gt=0, description="also the run's dagster/max_runtime tag")
    max_repeat_calls: int = Field(3, gt=0, description="the same tool with the same arguments, per run")


class Recovery(BaseModel):
    """How the recovery sweeper treats an intent whose run died or failed: bounded attempts with
    exponential backoff, then needs_attention with an escalation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: int = Field(3, ge=0, description="recovery runs before the intent needs attention")
    backoff_s: float = Field(30.0, ge=0, description="wait before attempt n: backoff_s * 2**(n-1), capped")
    max_backoff_s: float = Field(900.0, ge=0)

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(attempt - 1, 0))


class Rollout(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Mode = Mode.FULL


class PolicyPack(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
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

    @model_validator(mode="after")
    def _consistent(self) -> "PolicyPack":
        unknown = sorted((set(self.constraints) | set(self.high_impact_tools)
                          | set(self.approval.required_for_tools)) - set(self.allowed_tools))
        if unknown:
            raise ValueError(f"constraints/high_impact_tools/required_for_tools name tools that are not "
                             f"in allowed_tools: {unknown}")
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
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"cannot parse policy pack {source}: {exc}") from exc
        try:
            return cls.model_validate(data)
        except Exception as exc:
            raise PolicyError(f"invalid policy pack {source}: {exc}") from exc

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def allows_tool(self, tool: str) -> bool:
        return tool in self.allowed_tools

    def param_violations(self, tool: str, params: dict[str, Any]) -> list[str]:
        """Each constraint the parameters break (a constrained parameter that is absent breaks it too)."""
        out: list[str] = []
        for name, c in self.constraints.get(tool, {}).items():
            if name not in params or params[name] is None:
                out.append(f"{name}: missing (constrained)")
                continue
            out += [f"{name}: {v}" for v in c.violations(params[name])]
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
        held = sorted({t for t, high in planned if high or t in self.high_impact_tools})
        if mode == Mode.LIMITED and held:
            fired.append(("limited_mode_holds_high_impact", Decision.NEEDS_APPROVAL,
                          f"limited mode: high-impact writes {held} are held for a human"))
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
