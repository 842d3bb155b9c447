"""The scorecard's checks (thresholds and day-over-day spikes) and the alert a failed check posts.

Each check compares a workflow's day with the day before (both computed from our tables by
framework/scorecard.py, so a check never depends on which partitions happen to be materialized):

- `no_duplicate_writes` (ERROR): any committed write that repeats an (intent, action) fails it;
- `escalation_rate_spike`: the escalation rate at least `spike_factor` times the previous day's, or
  above `escalation_rate_max`, once the day has `min_escalations` escalations;
- `token_spend_spike`: tokens or cost at least `spike_factor` times the previous day's, once the day
  spent `min_tokens` tokens or `min_cost_usd`;
- `policy_blocks_rising`: more blocked (denied) policy decisions than the day before and a block rate
  `block_rate_rise` or more above the previous day's, once the day has `min_blocks` blocks.

A failed check posts one Slack-compatible message (`{"text", "blocks"}`) to the alert webhook
(AGENT_PIPELINES_ALERT_WEBHOOK_URL) through the same sender as the approval notifications
(notify_delivery.post_webhook). Alerts are not queued in the notifications outbox: that outbox belongs
to approval requests (its rows, audit events and escalations are keyed by approval). A delivery
failure never fails the check: it is recorded as an `alert_failed` escalation and in the check's
metadata. A re-materialized day posts its failed checks again; the Idempotency-Key header (check,
partition and figures) lets a receiver drop a repeat."""

from datetime import date
from enum import StrEnum
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field

from agent_pipelines.framework.approvals import escalate
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.notifications import mrkdwn
from agent_pipelines.framework.notify_delivery import SendError, post_webhook
from agent_pipelines.framework.redaction import redact_text
from agent_pipelines.framework.scorecard import DayMetrics
from agent_pipelines.framework.signing import sha256


class CheckName(StrEnum):
    NO_DUPLICATE_WRITES = "no_duplicate_writes"
    ESCALATION_RATE_SPIKE = "escalation_rate_spike"
    TOKEN_SPEND_SPIKE = "token_spend_spike"
    POLICY_BLOCKS_RISING = "policy_blocks_rising"


DESCRIPTIONS = {
    CheckName.NO_DUPLICATE_WRITES: "No committed write repeats an (intent, action) of the ledger (ERROR).",
    CheckName.ESCALATION_RATE_SPIKE: "The escalation rate did not double against the previous day, nor "
                                     "pass escalation_rate_max.",
    CheckName.TOKEN_SPEND_SPIKE: "LLM tokens and cost did not double against the previous day.",
    CheckName.POLICY_BLOCKS_RISING: "Blocked policy decisions did not rise against the previous day.",
}


class ScorecardThresholds(dg.Config):
    """When the scorecard's checks fail (run config of the scorecard assets; these defaults otherwise).
    The floors keep a quiet day from alerting on noise: one escalation among two intents is 50 %."""

    spike_factor: float = Field(2.0, gt=1.0, description="a figure this many times the previous day's is a spike")
    escalation_rate_max: float = Field(0.25, ge=0.0, le=1.0,
                                       description="escalations per intent above this fail whatever the day before")
    min_escalations: int = Field(3, ge=1, description="fewer escalations in the day never fail the escalation check")
    min_tokens: int = Field(10_000, ge=0, description="fewer tokens in the day never fail the spend check on tokens")
    min_cost_usd: float = Field(0.01, ge=0.0, description="less spend in the day never fails the spend check on cost")
    block_rate_rise: float = Field(0.10, ge=0.0, le=1.0,
                                   description="rise of the policy block rate (absolute) that fails the check")
    min_blocks: int = Field(3, ge=1, description="fewer blocked decisions in the day never fail the block check")


class CheckOutcome(BaseModel, frozen=True):
    name: CheckName
    passed: bool
    severity: dg.AssetCheckSeverity
    summary: str  # one line: what was seen against what
    figures: dict[str, float]


def _spiked(today: float, before: float, factor: float) -> bool:
    return today > 0 and today >= factor * before


def evaluate(day: DayMetrics, before: DayMetrics, th: ScorecardThresholds) -> list[CheckOutcome]:
    """Every check's outcome for `day` against `before` (the previous day)."""
    warn, error = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR
    esc, esc_before = day.rates()["escalation_rate"] or 0.0, before.rates()["escalation_rate"] or 0.0
    blk, blk_before = day.rates()["policy_block_rate"] or 0.0, before.rates()["policy_block_rate"] or 0.0
    esc_fail = day.escalations >= th.min_escalations and (
        _spiked(esc, esc_before, th.spike_factor) or esc > th.escalation_rate_max)
    spend_fail = (day.tokens >= th.min_tokens and _spiked(day.tokens, before.tokens, th.spike_factor)) or (
        day.cost_usd >= th.min_cost_usd and _spiked(day.cost_usd, before.cost_usd, th.spike_factor))
    blocks_fail = (day.policy_blocks >= th.min_blocks and day.policy_blocks > before.policy_blocks
                   and blk - blk_before >= th.block_rate_rise)
    return [
        CheckOutcome(name=CheckName.NO_DUPLICATE_WRITES, passed=day.duplicate_writes == 0, severity=error,
                     summary=f"{day.duplicate_writes} duplicate write(s) among {day.writes} committed",
                     figures={"duplicate_writes": day.duplicate_writes, "writes": day.writes}),
        CheckOutcome(name=CheckName.ESCALATION_RATE_SPIKE, passed=not esc_fail, severity=warn,
                     summary=f"escalation rate {esc:.2%} ({day.escalations} of {day.intents} intents) vs "
                             f"{esc_before:.2%} the day before",
                     figures={"escalation_rate": esc, "previous_escalation_rate": esc_before,
                              "escalations": day.escalations}),
        CheckOutcome(name=CheckName.TOKEN_SPEND_SPIKE, passed=not spend_fail, severity=warn,
                     summary=f"{day.tokens} tokens, ${day.cost_usd:.4f} vs {before.tokens} tokens, "
                             f"${before.cost_usd:.4f} the day before",
                     figures={"tokens": day.tokens, "previous_tokens": before.tokens, "cost_usd": day.cost_usd,
                              "previous_cost_usd": before.cost_usd}),
        CheckOutcome(name=CheckName.POLICY_BLOCKS_RISING, passed=not blocks_fail, severity=warn,
                     summary=f"{day.policy_blocks} blocked policy decisions ({blk:.2%}) vs {before.policy_blocks} "
                             f"({blk_before:.2%}) the day before",
                     figures={"policy_blocks": day.policy_blocks, "previous_policy_blocks": before.policy_blocks,
                              "policy_block_rate": blk, "previous_policy_block_rate": blk_before}),
    ]


class AlertWebhook(dg.ConfigurableResource):
    """Where failed scorecard checks are posted (AGENT_PIPELINES_ALERT_WEBHOOK_URL); off without a URL."""

    webhook_url: str | None = Field(None, repr=False)  # a Slack-style URL is itself a credential
    timeout_s: float = 5.0
    dagster_url: str = "http://127.0.0.1:3000"  # the alert links to the asset's page in the UI

    def deliver(self, db: Database, workflow: str, day: date, failed: list[CheckOutcome]) -> dict[CheckName, str]:
        """Post each failed check; the outcome per check: sent, not configured, or failed (recorded)."""
        out: dict[CheckName, str] = {}
        for check in failed:
            if not self.webhook_url:
                out[check.name] = "not sent: no alert webhook configured (AGENT_PIPELINES_ALERT_WEBHOOK_URL)"
                continue
            key = "alr-" + sha256({"check": str(check.name), "workflow": workflow, "day": day.isoformat(),
                                   "figures": check.figures})[:20]
            try:
                post_webhook(self.webhook_url, self.payload(workflow, day, check), timeout_s=self.timeout_s,
                             idempotency_key=key)
            except SendError as exc:
                error = redact_text(str(exc))[:1000]
            except Exception as exc:  # noqa: BLE001 - a delivery failure never fails the check
                error = f"{type(exc).__name__}: {redact_text(str(exc))}"[:1000]
            else:
                out[check.name] = "sent"
                continue
            out[check.name] = f"failed: {error}"
            db.transaction(lambda conn, k=key, c=check, e=error: escalate(
                conn, "alert_failed", k, None,
                f"scorecard alert {c.name} for {workflow} {day.isoformat()} was not delivered ({e}): {c.summary}"))
        return out

    def payload(self, workflow: str, day: date, check: CheckOutcome) -> dict[str, Any]:
        """Slack-compatible incoming-webhook JSON: `text` (the fallback) and minimal `blocks`."""
        link = f"{self.dagster_url.rstrip('/')}/assets/scorecard/{workflow}?partition={day.isoformat()}"
        head = f"Scorecard check {check.name} failed ({check.severity.value}): {workflow} on {day.isoformat()}"
        fields = [{"type": "mrkdwn", "text": f"*{mrkdwn(k)}*\n{v:g}"} for k, v in check.figures.items()][:10]
        return {"text": f"{head}: {check.summary}. {link}",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{mrkdwn(head)}*"}},
                           {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(check.summary)}},
                           {"type": "section", "fields": fields},
                           {"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|Open in Dagster>"}}]}
