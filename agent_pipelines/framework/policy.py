"""Policy packs: which tools a workflow may call, and which proposals are allowed, sent to a human
or denied. Loaded from a versioned YAML file; a broken file fails at load, never silently allows."""

import hashlib
import json
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


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

    def roles_of(self, who: str) -> tuple[str, ...]:
        return self.approvers.get(who, ())

    def may_decide(self, who: str) -> bool:
        return any(r in self.allowed_roles for r in self.roles_of(who))

    def required_approvals(self, facts: dict[str, Any]) -> int:
        sa = self.second_approval
        return 2 if sa is not None and float(facts.get(sa.fact, 0) or 0) >= sa.value else 1


class PolicyPack(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    workflow: str
    version: str
    allowed_tools: tuple[str, ...] = Field(description="deny by default: only these tools may be called")
    rules: tuple[Rule, ...] = ()
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    input_ttl_hours: float = Field(72.0, gt=0, description="how long an intent waits for a missing input")

    @classmethod
    def load(cls, path: str | Path) -> "PolicyPack":
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy pack {path}: {exc}") from exc
        try:
            return cls.model_validate(data)
        except Exception as exc:
            raise PolicyError(f"invalid policy pack {path}: {exc}") from exc

    @property
    def digest(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def allows_tool(self, tool: str) -> bool:
        return tool in self.allowed_tools

    def decide(self, facts: dict[str, Any]) -> PolicyDecision:
        """Evaluate every rule; the most severe decision wins. A missing fact denies (fail closed)."""
        fired: list[Rule] = []
        missing = sorted({r.fact for r in self.rules if r.fact not in facts})
        if missing:
            return PolicyDecision(decision=Decision.DENY, rule="missing_fact",
                                  reasons=(f"policy needs facts {missing} the workflow did not provide",),
                                  observed={}, policy_digest=self.digest)
        fired = [r for r in self.rules if r.fires(facts)]
        if not fired:
            return PolicyDecision(decision=Decision.ALLOW, rule="within_policy", reasons=(),
                                  observed={r.fact: facts[r.fact] for r in self.rules}, policy_digest=self.digest)
        top = max(fired, key=lambda r: _SEVERITY[r.decision])
        winners = [r for r in fired if r.decision == top.decision]
        return PolicyDecision(decision=top.decision, rule=winners[0].name,
                              reasons=tuple(f"{r.name}: {r.reason}" for r in winners),
                              observed={r.fact: facts[r.fact] for r in fired}, policy_digest=self.digest)


class PolicyError(ValueError):
    pass
