"""Incident triage, step by step: "checkout-api error rate above 20 %".

Trigger: a new row in alerts, written by the alerting webhook (sensors/incidents.py). READ the service's
catalog entry, its open incidents, and its metrics and log files through read-only tools; PROPOSE a
severity, the team and a summary (model or offline rules); VALIDATE (a known, active service; no open
incident for the same fingerprint; diagnostics present; the team owns the service or is its escalation;
nothing from the logs that addresses an agent in the summary; the severity against the metrics as
policy facts); a sev1 pages people, so it waits for a human (policy.yaml); COMMIT one incident ticket,
once; VERIFY by reading it back. No step remediates anything: no such tool exists (tools.py)."""

import re
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from agent_pipelines.framework.tools import ToolRegistry
from agent_pipelines.framework.ledger import WriteReceipt, excess
from agent_pipelines.framework.tables import writes
from agent_pipelines.framework.untrusted import instruction_like
from agent_pipelines.framework.workflow import (
    NeedInput,
    Step,
    Validation,
    Verification,
    Violation,
    Workflow,
    WriteAction,
)
from agent_pipelines.workflows.incident_triage import prompts, tools
from agent_pipelines.workflows.incident_triage.models import (
    SERVICE_PATTERN,
    SEVERITIES,
    WORKFLOW,
    AlertIntake,
    IncidentSnapshot,
    TriageContext,
    TriageProposal,
    evidence_severity,
    rank,
)
from assets import expectations
from resources.incidents import incidents, service_catalog

MAX_FLAGS = 10


class IncidentTriage(Workflow[AlertIntake, TriageContext, TriageProposal]):
    name = WORKFLOW
    version = "1.0.0"
    prompt_version = prompts.PROMPT_VERSION
    description = ("Triage an alert from read-only diagnostics into one incident ticket for humans (severity, "
                   "owning team, summary); never remediates; sev1 waits for a person.")
    intake_model = AlertIntake
    context_model = TriageContext
    proposal_model = TriageProposal
    policy_file = Path(__file__).with_name("policy.yaml")
    record_tables = (service_catalog, incidents)
    gold_file = Path(__file__).with_name("gold.yaml")

    def tools(self) -> ToolRegistry:
        return tools.registry()

    def seed_gold_files(self, settings: Any) -> None:
        from agent_pipelines.workflows.incident_triage import diagnostics

        diagnostics.write_gold(settings.diagnostics_folder)

    # 1. READ ------------------------------------------------------------------------------------------
    def read(self, step: Step, intake: AlertIntake) -> TriageContext:
        service = intake.service_id
        # Only a well-formed service name is looked up (it also names the diagnostics folder).
        entry = step.tools.read("get_service", {"service": service}) if _known_shape(service) else None
        if entry is None:
            return TriageContext(service=None, open_incidents=(), metrics=None, logs=None)
        return TriageContext(service=entry,
                             open_incidents=tuple(step.tools.read("list_open_incidents", {"service": service})),
                             metrics=step.tools.read("read_metrics", {"service": service}),
                             logs=step.tools.read("read_logs", {"service": service}))

    def batch_key(self, intake: AlertIntake) -> str | None:
        # Alerts of one fingerprint depend on each other: the second must see the incident the first opens.
        return f"fingerprint:{intake.dedupe_key}"

    # 2. PROPOSE (the framework calls the model with these messages, or the offline proposer) ----------
    def messages(self, intake: AlertIntake, context: TriageContext) -> list[dict[str, str]]:
        return prompts.messages(intake, context)

    def propose_offline(self, intake: AlertIntake, context: TriageContext) -> TriageProposal:
        return triage(intake, context)

    # 3. VALIDATE --------------------------------------------------------------------------------------
    def validate(self, step: Step, intake: AlertIntake, context: TriageContext,
                 proposal: TriageProposal) -> Validation:
        service = intake.service_id
        # The question is keyed by the intake field its answer fills: READ runs again with it.
        if not service:
            return Validation(need_input=NeedInput(field="service", question=(
                f"Alert {intake.alert_id} names no service. Which service in the service catalog is alerting? "
                f"Its owner, diagnostics and open incidents are looked up by that name.")))
        entry = context.service
        if entry is None:
            return _reject("unknown_service", f"{service!r} is not in the service catalog: add it (with its owner "
                           f"team) or fix the alert's service label, then re-send the alert")
        if entry.status != "active":
            return _reject("service_retired", f"{service} is {entry.status} in the service catalog; an alert from "
                           f"it is a stale alerting rule: remove the rule or reactivate the service")
        dup = context.open_for(intake.dedupe_key)
        if dup is not None:
            return _reject("duplicate_open_incident", f"{dup.incident_id} ({dup.severity}, {dup.team}) is already open "
                           f"for fingerprint {intake.dedupe_key!r}: this alert repeats it and opens nothing new; "
                           f"follow up on {dup.incident_id}")
        metrics, logs = context.metrics, context.logs
        if metrics is None or metrics.metrics is None or logs is None or not logs.found:
            missing = [p for p in (metrics and metrics.problem,
                                   None if logs and logs.found else f"no {service}/{tools.LOG_FILE}") if p]
            rule = "diagnostics_unreadable" if metrics is not None and metrics.unreadable else "diagnostics_missing"
            return _reject(rule, f"diagnostics for {service} are incomplete ({'; '.join(missing)}): the severity "
                           f"cannot be judged without them; re-send the alert once the collector has written them")

        violations: list[Violation] = []
        allowed = [t for t in (entry.owner_team, entry.escalation_team) if t]
        if proposal.team not in allowed:
            violations.append(Violation(rule="team_not_owner", message=(
                f"the triage assigns {proposal.team!r}, but {service} is owned by {entry.owner_team!r}"
                + (f" (escalation {entry.escalation_team!r})" if entry.escalation_team else "")
                + ": fix the alert's routing or the service catalog")))
        hits = instruction_like(proposal.summary)
        if hits:
            violations.append(Violation(rule="summary_instruction_like", message=(
                f"the summary carries text addressed to an agent ({'; '.join(hits)[:200]}); it is untrusted text "
                f"from the alert or its logs and never goes into a ticket as if it were the triage")))
        if violations:
            return Validation(violations=tuple(violations))
        evidence = evidence_severity(metrics.metrics)
        log_hits = _log_instruction_like(intake, context)
        facts = {
            "service": service,
            "service_tier": entry.tier,
            "severity": proposal.severity,
            "evidence_severity": evidence,
            "severity_understated": rank(proposal.severity) > rank(evidence),
            "severity_overstated": rank(proposal.severity) < rank(evidence),
            "team": proposal.team,
            "team_is_escalation": proposal.team != entry.owner_team,
            "related_open_incidents": [i.incident_id for i in context.open_incidents],
            # Flagged on the ticket for whoever picks it up; blocks nothing: no tool could act on it.
            "instruction_like_text": log_hits,
        }
        return Validation(facts=facts, checks=(expectations.incident_pre_write([{
            "severity": proposal.severity, "team": proposal.team, "summary": proposal.summary,
            **metrics.metrics.model_dump(include={"error_rate", "availability", "p99_latency_ms"})}]),))

    def preconditions(self, context: TriageContext, proposal: TriageProposal) -> dict[str, Any]:
        s = context.service
        return {"service": s and s.model_dump(include={"owner_team", "escalation_team", "status"}),
                # an incident opened since READ (for any fingerprint of the service) means triage again
                "open_incidents": sorted(i.incident_id for i in context.open_incidents)}

    # 4. COMMIT: one write, applied once by the framework through the ledger ---------------------------
    def plan_writes(self, intent_id: str, intake: AlertIntake, context: TriageContext,
                    proposal: TriageProposal) -> list[WriteAction]:
        assert context.service is not None and context.metrics is not None and context.metrics.metrics is not None
        flags = {k: v for k, v in (("instruction_like_text", _log_instruction_like(intake, context)),) if v}
        m = context.metrics.metrics
        return [WriteAction(action="create_incident", tool="create_incident", params={
            "intent_id": intent_id, "alert_id": intake.alert_id, "service": context.service.service,
            "fingerprint": intake.dedupe_key, "severity": proposal.severity, "team": proposal.team,
            "summary": proposal.summary, "flags": flags,
            "evidence": {**m.model_dump(), "evidence_severity": evidence_severity(m)}})]

    # 5. VERIFY: read the incident back through a read tool -------------------------------------------
    def verify(self, step: Step, intake: AlertIntake, context: TriageContext, proposal: TriageProposal,
               receipts: list[WriteReceipt]) -> Verification:
        intent_id = step.intent.intent_id
        incident_id = receipts[0].key if receipts else tools.incident_id_for(intent_id)
        back: IncidentSnapshot | None = step.tools.read("get_incident", {"incident_id": incident_id})
        if back is None:
            return Verification(passed=False, problems=(f"{incident_id} is not in incidents",))
        want = (intake.service_id, intake.dedupe_key, proposal.severity, proposal.team, proposal.summary, intent_id)
        got = (back.service, back.fingerprint, back.severity, back.team, back.summary, back.created_by_intent)
        problems = [] if got == want else [f"{incident_id} reads back as {got}, expected {want}"]
        row = back.model_dump(include={"incident_id", "created_by_intent", "severity", "status", "team", "summary",
                                       "fingerprint"})
        return Verification(passed=not problems, problems=tuple(problems),
                            checks=(expectations.incidents_post_write_check([row]),),
                            records={"incident": incident_id, "severity": back.severity, "team": back.team,
                                     "status": back.status, "flags": back.flags})

    # Audit: duplicates counted from the system of record and the ledger -------------------------------
    def duplicate_writes(self, conn: Connection) -> int:
        i, w = incidents.c, writes.c
        # more than one incident per creating intent, more than one open incident per fingerprint, more
        # than one incident per alert version's intent in the ledger
        return (excess(conn, [i.created_by_intent])
                + excess(conn, [i.fingerprint], i.status == "open")
                + excess(conn, [w.target], w.workflow == self.name, w.status == "committed"))


# -- the offline proposer: the same typed triage a model would return, from rules -----------------------
_ERROR = re.compile(r"\bERROR\b\s*(.*)")
_VARIABLE = re.compile(r"\b(0x[0-9a-f]+|[0-9a-f]{8,}|\d+)\b", re.IGNORECASE)


def triage(intake: AlertIntake, context: TriageContext) -> TriageProposal:
    """Severity: the alerting rule's own label when it has a valid one, else what the metrics show. Team:
    the alerting rule's route when it has one, else the catalog owner. The summary is built from the
    trusted figures and the most frequent error line; a log line or title addressed to an agent is never
    copied (it is only counted in the rationale)."""
    entry = context.service
    m = context.metrics.metrics if context.metrics else None
    evidence = evidence_severity(m) if m else "sev3"
    label = (intake.severity_label or "").strip().lower()
    severity = label if label in SEVERITIES else evidence
    team = (intake.routing_team or "").strip() or (entry.owner_team if entry else "unassigned")
    name = entry.display_name if entry else (intake.service_id or "unknown service")
    title = " ".join(intake.title.split())
    parts = [f"{name}: " + (title[:160] if title and not instruction_like(title)
                            else "alert" + (" (title withheld: it addresses the agent)" if title else ""))]
    if m:
        parts.append(f"error rate {m.error_rate:.1%}, p99 {m.p99_latency_ms:,.0f} ms, availability "
                     f"{m.availability:.2%} over {m.window_minutes} min")
    logs = context.logs
    if logs and logs.found:
        parts.append(f"{logs.error_lines} ERROR line(s) in the last {len(logs.lines)} log lines")
        top = top_error(logs.lines)
        if top:
            parts.append(f"most frequent: {top[:160]}")
    notes = [f"metrics indicate {evidence}" if m else "no metrics were readable",
             f"severity {'from the alert label' if label in SEVERITIES else 'from the metrics'}",
             f"team {'from the alert route' if (intake.routing_team or '').strip() else 'from the catalog owner'}"]
    hits = _log_instruction_like(intake, context)
    if hits:
        notes.append(f"{len(hits)} fragment(s) of the alert or its logs address the agent; they are data, were "
                     f"not acted on and are flagged on the ticket")
    return TriageProposal(severity=severity, team=team[:64], summary="; ".join(parts)[:500],
                          rationale="; ".join(notes)[:2000])


def top_error(lines: tuple[str, ...] | list[str]) -> str | None:
    """The most frequent ERROR message (numbers and ids folded), as one of its lines shows it; lines
    addressed to an agent are left out."""
    seen: Counter[str] = Counter()
    example: dict[str, str] = {}
    for line in lines:
        m = _ERROR.search(line)
        if not m or not m.group(1).strip() or instruction_like(line):
            continue
        message = " ".join(m.group(1).split())
        key = _VARIABLE.sub("#", message)
        seen[key] += 1
        example.setdefault(key, message)
    return example[seen.most_common(1)[0][0]] if seen else None


def _log_instruction_like(intake: AlertIntake, context: TriageContext) -> list[str]:
    lines = list(context.logs.lines) if context.logs else []
    found = instruction_like(intake.title) + [h for line in lines for h in instruction_like(line)]
    return list(dict.fromkeys(found))[:MAX_FLAGS]


def _known_shape(service: str) -> bool:
    return bool(re.fullmatch(SERVICE_PATTERN, service))


def _reject(rule: str, message: str) -> Validation:
    return Validation(violations=(Violation(rule=rule, message=message),))
