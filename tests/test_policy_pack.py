"""Policy packs: a broken pack fails loudly at load; constraints, preconditions and approval gates
decide exactly as written; every decision is recorded with its rule and the values it saw."""

import pytest
from sqlalchemy import select

from agent_pipelines.framework.jobs import TAG, run_tags
from agent_pipelines.framework.policy import Constraint, Decision, Mode, PolicyError, PolicyPack
from agent_pipelines.framework.tables import policy_decisions
from agent_pipelines.workflows import all_workflows
from tests.helpers import WF, intake, register, run_intent

BASE = """
workflow: w
version: "1"
allowed_tools: [pay, read_it]
"""


def test_every_shipped_pack_loads_and_its_digest_is_pinned_on_runs():
    for wf in all_workflows():
        assert wf.policy.workflow == wf.name and len(wf.policy.digest) == 64
        assert run_tags(wf, "i-1", model="m")[f"{TAG}/policy_digest"] == wf.policy.digest[:16]


@pytest.mark.parametrize("broken, message", [
    (BASE + "allowed_tool: [x]\n", "allowed_tool"),                                   # typo'd top-level key
    (BASE + "constraints: {pay: {amount: {maxx: 5}}}\n", "maxx"),                     # typo'd constraint key
    (BASE + "constraints: {pay: {to: {pattern: '([a-z'}}}\n", "pattern"),            # regex that does not compile
    (BASE + "constraints: {wire: {amount: {max: 5}}}\n", "not in allowed_tools"),     # constraint on a denied tool
    (BASE + "high_impact_tools: [wire]\n", "not in allowed_tools"),
    (BASE + "approval: {required_for_tools: [wire]}\n", "not in allowed_tools"),
    (BASE + "rules: [{name: r, fact: f, op: bigger, value: 1, decision: deny, reason: x}]\n", "op"),
    (BASE + "rules: [{name: r, fact: f, op: gt, value: 1, decision: allow, reason: x}]\n", "decision"),
    (BASE + "budgets: {max_tool_calls: -1}\n", "max_tool_calls"),
    (BASE + "rollout: {mode: yolo}\n", "mode"),
    ("workflow: w\nversion: '1'\n", "allowed_tools"),                                   # deny-by-default list missing
    ("workflow: [unclosed\n", "cannot parse"),
    ("", "invalid policy pack"),
])
def test_a_broken_pack_fails_at_load_never_silently_allows(tmp_path, broken, message):
    path = tmp_path / "policy.yaml"
    path.write_text(broken)
    with pytest.raises(PolicyError, match=message):
        PolicyPack.load(path)


def test_a_missing_pack_file_fails_at_load(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        PolicyPack.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize("constraint, value, ok", [
    (Constraint(max=100), 100, True), (Constraint(max=100), 101, False), (Constraint(min=1), 0, False),
    (Constraint(max=100), "50", False), (Constraint(max=100), True, False),
    (Constraint(one_of=("USD", "EUR")), "EUR", True), (Constraint(one_of=("USD", "EUR")), "usd", False),
    (Constraint(not_one_of=("admin",)), "admin", False),
    (Constraint(email_domains=("example.com",)), "a@example.com", True),
    (Constraint(email_domains=("example.com",)), "a@EXAMPLE.com", True),
    (Constraint(email_domains=("example.com",)), "a@example.com.evil.io", False),
    (Constraint(email_domains=("example.com",)), "a@evil.io@example.com", False),
    (Constraint(email_domains=("example.com",)), ["a@example.com", "b@evil.io"], False),
    (Constraint(pattern=r"V-\d+"), "V-12", True), (Constraint(pattern=r"V-\d+"), "V-12; DROP", False),
    (Constraint(max_length=3), "abcd", False), (Constraint(max_items=2), ["a", "b", "c"], False),
])
def test_constraints(constraint, value, ok):
    assert (constraint.violations(value) == []) is ok


def pack(extra: str) -> PolicyPack:
    return PolicyPack.from_yaml(BASE + extra)


def test_missing_evidence_and_wrong_record_state_deny_before_any_rule():
    p = pack("preconditions: {evidence: [user_id, hr_ref], record_state: {hr_confirmed: true}}\n")
    d = p.decide({"user_id": "u-1", "hr_ref": "", "hr_confirmed": True})
    assert (d.decision, d.rule) == (Decision.DENY, "evidence_missing") and "hr_ref" in d.reasons[0]
    d = p.decide({"user_id": "u-1", "hr_ref": "HR-1", "hr_confirmed": False})
    assert (d.decision, d.rule) == (Decision.DENY, "record_state")
    assert p.decide({"user_id": "u-1", "hr_ref": "HR-1", "hr_confirmed": True}).decision == Decision.ALLOW


def test_required_for_tools_and_limited_mode_send_the_change_to_a_human():
    p = pack("approval: {required_for_tools: [pay]}\n")
    d = p.decide({}, planned=[("pay", False)])
    assert (d.decision, d.rule) == (Decision.NEEDS_APPROVAL, "tool_requires_approval")
    q = pack("high_impact_tools: [pay]\n")
    assert q.decide({}, planned=[("pay", False)]).decision == Decision.ALLOW
    d = q.decide({}, planned=[("pay", False)], mode=Mode.LIMITED)
    assert (d.decision, d.rule) == (Decision.NEEDS_APPROVAL, "limited_mode_holds_high_impact")
    assert q.decide({}, planned=[("read_it", False)], mode=Mode.LIMITED).decision == Decision.ALLOW


def test_the_most_severe_rule_wins_and_a_missing_fact_denies():
    p = pack("rules:\n"
             "  - {name: big, fact: amount, op: gt, value: 10, decision: needs_approval, reason: big}\n"
             "  - {name: huge, fact: amount, op: gt, value: 100, decision: deny, reason: huge}\n")
    assert p.decide({"amount": 5}).decision == Decision.ALLOW
    assert p.decide({"amount": 50}).rule == "big"
    d = p.decide({"amount": 500})
    assert (d.decision, d.rule, d.observed) == (Decision.DENY, "huge", {"amount": 500})
    assert p.decide({}).rule == "missing_fact"


def test_each_decision_is_recorded_with_rule_and_values_in_the_table_and_the_run_log(seeded):
    intent_id = register(seeded, intake(total_cents=120_000))  # 20% over the PO
    result = run_intent(seeded, intent_id)
    with seeded.db.connect() as conn:
        row = conn.execute(select(policy_decisions).where(policy_decisions.c.intent_id == intent_id)).mappings().one()
    assert (row["decision"], row["rule"], row["policy_digest"]) == ("needs_approval", "variance_above_tolerance_pct",
                                                                    WF.policy.digest)
    assert row["observed"]["values"]["abs_variance_pct"] == 20.0
    logs = [e.user_message for e in seeded.instance.all_logs(result.run_id) if e.user_message]
    assert any(m.startswith("trace.policy_decision") and "variance_above_tolerance_pct" in m for m in logs)
