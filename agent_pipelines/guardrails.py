"""The public guardrails API: typed tools behind a policy pack, without writing a Dagster job.

    registry = ToolRegistry([Tool("refund", Refund, ToolKind.WRITE, Impact.HIGH, refund)])
    policy = PolicyPack.from_yaml(text)            # or PolicyPack.load("policy.yaml")
    gateway = ToolGateway.open(registry, policy, Database(url).migrate(), intent_id="refund:ORD-1")
    gateway.write("refund", {...}, action="refund")

The same enforcement the shipped workflows get: allowlist (deny by default), pydantic params plus the
pack's constraints, the provenance rule over destinations (values from untrusted text or the model
need a trusted read, else deny or approval), per-run budgets and loop detection, the kill switch,
rollout modes, exactly-once writes through the ledger, and a redacted trace of every call and decision.
See README "Guardrails as a library" (and its "Provenance" part)."""

from agent_pipelines.framework.budgets import BudgetExceeded
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.gateway import ToolGateway
from agent_pipelines.framework.write_stops import KillSwitchEngaged
from agent_pipelines.framework.tools import (Impact, PermanentToolError, RetryableToolError, Tool, ToolBlocked,
                                             ToolHeld, ToolKind, ToolRegistry)
from agent_pipelines.framework.ledger import PreconditionFailed, WriteOutcome, WriteReceipt, WriteStatus
from agent_pipelines.framework.policy import Decision, Mode, PolicyDecision, PolicyError, PolicyPack
from agent_pipelines.framework.provenance import PROVENANCE_FACT, ProvenanceFinding, ProvenanceRule
from agent_pipelines.framework.redaction import redact, redact_text
from agent_pipelines.framework.untrusted import instruction_like, untrusted_block

__all__ = [
    "BudgetExceeded", "Database", "Decision", "Impact", "KillSwitchEngaged", "Mode", "PROVENANCE_FACT",
    "PermanentToolError", "PolicyDecision", "PolicyError", "PolicyPack", "PreconditionFailed", "ProvenanceFinding",
    "ProvenanceRule", "RetryableToolError", "Tool", "ToolBlocked",
    "ToolGateway", "ToolHeld", "ToolKind", "ToolRegistry", "WriteOutcome", "WriteReceipt", "WriteStatus",
    "instruction_like", "redact", "redact_text", "untrusted_block",
]
