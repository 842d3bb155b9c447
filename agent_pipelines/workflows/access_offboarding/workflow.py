"""Access offboarding, step by step: "Remove John's admin access, he left."

Trigger: a new row in access_requests (sensors/access.py). READ the leaver's directory account, its
active role grants and the HR offboarding record the request cites; PROPOSE the changes (model or
offline rules): disable the account, remove roles; VALIDATE (one leaver, named by user id and
backed by a confirmed HR record of that same user; only roles they hold; policy facts); every
change then waits for a human approver (policy.yaml); COMMIT each change once, never deleting a
row; VERIFY by reading the account and every grant back. Policy: policy.yaml beside this file."""

import re
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
from agent_pipelines.workflows.access_offboarding import prompts, tools
from agent_pipelines.workflows.access_offboarding.models import (
    OFFBOARDING_REF_PATTERN,
    USER_ID_PATTERN,
    WORKFLOW,
    AccessAction,
    AccessContext,
    AccessRequestIntake,
    AccountSnapshot,
    GrantSnapshot,
    OffboardingProposal,
)
from resources.access import directory_accounts, hr_offboarding, role_grants

# A request for a group of people ("remove everyone in finance"). This workflow offboards exactly one
# person per request, against that person's own HR record; a group is never one request.
_BULK_SCOPE = re.compile(
    r"\b(everyone|everybody|all (the )?(users|accounts|staff|employees|members|people|contractors|admins)"
    r"|(the )?(whole|entire) (team|department|dept|org|organi[sz]ation|company|group|division)"
    r"|every (user|account|employee|member|admin))\b", re.I)
_DELETE = re.compile(r"\b(delete|purge|wipe|erase)\b", re.I)


def bulk_scope(text: str) -> str | None:
    m = _BULK_SCOPE.search(text or "")
    return m.group(0) if m else None


class AccessOffboarding(Workflow[AccessRequestIntake, AccessContext, OffboardingProposal]):
    name = WORKFLOW
    version = "1.0.0"
    prompt_version = prompts.PROMPT_VERSION
    description = ("Offboard one leaver named in an access request: disable the account and remove its roles, "
                   "backed by a confirmed HR record, every change approved by a person, applied once.")
    intake_model = AccessRequestIntake
    context_model = AccessContext
    proposal_model = OffboardingProposal
    policy_file = Path(__file__).with_name("policy.yaml")
    record_tables = (directory_accounts, role_grants, hr_offboarding)
    gold_file = Path(__file__).with_name("gold.yaml")

    def tools(self) -> ToolRegistry:
        return tools.registry()

    # 1. READ ------------------------------------------------------------------------------------------
    def read(self, step: Step, intake: AccessRequestIntake) -> AccessContext:
        # Only well-formed ids are looked up; VALIDATE asks for a missing or malformed one.
        user_id = _well_formed(intake.evidence_user_id, USER_ID_PATTERN)
        ref = _well_formed(intake.evidence_ref, OFFBOARDING_REF_PATTERN)
        account = step.tools.read("get_account", {"user_id": user_id}) if user_id else None
        grants = step.tools.read("list_grants", {"user_id": user_id}) if account else []
        hr = step.tools.read("get_hr_offboarding", {"reference": ref}) if ref else None
        return AccessContext(user_id=intake.evidence_user_id, offboarding_ref=intake.evidence_ref, account=account,
                             grants=tuple(grants), hr_record=hr)

    def batch_key(self, intake: AccessRequestIntake) -> str | None:
        # Two requests about one person: the second must see what the first revoked.
        return f"user:{intake.evidence_user_id}" if intake.evidence_user_id else (
            f"ref:{intake.evidence_ref}" if intake.evidence_ref else None)

    # 2. PROPOSE (the framework calls the model with these messages, or the offline proposer) ----------
    def messages(self, intake: AccessRequestIntake, context: AccessContext) -> list[dict[str, str]]:
        return prompts.messages(intake, context)

    def propose_offline(self, intake: AccessRequestIntake, context: AccessContext) -> OffboardingProposal:
        return offboard(intake, context)

    # 3. VALIDATE --------------------------------------------------------------------------------------
    def validate(self, step: Step, intake: AccessRequestIntake, context: AccessContext,
                 proposal: OffboardingProposal) -> Validation:
        # The request's scope first: a group or several people is never one offboarding, so there is
        # no question to ask back, only a request to split.
        group = bulk_scope(intake.text)
        if group:
            return _reject("bulk_request", f"the request asks for a change to a group ({group!r}); access is "
                           f"removed one leaver at a time, each backed by their own HR offboarding record: submit "
                           f"one request per person with their user id and HR reference")
        for rule, what, named in (("more_than_one_user", "users", intake.named_user_ids),
                                  ("more_than_one_offboarding_ref", "HR offboarding references", intake.named_refs)):
            if len(named) > 1:
                return _reject(rule, f"the request names {len(named)} {what} ({', '.join(named)}); one request "
                               f"offboards one person under one HR record: submit one request per person")
        # Required evidence. Questions are keyed by the intake field their answer fills, so an answer
        # resumes the intent with the corrected request and READ runs again.
        user_id, ref = context.user_id, context.offboarding_ref
        if not _well_formed(user_id, USER_ID_PATTERN):
            got = f"{user_id!r} is not a directory user id. " if user_id else ""
            return Validation(need_input=NeedInput(field="user_id", question=(
                f"{got}Which directory user id (u-NNNNN) is leaving? Access is only removed from an account "
                f"named by its user id.")))
        if not _well_formed(ref, OFFBOARDING_REF_PATTERN):
            got = f"{ref!r} is not an HR offboarding reference. " if ref else ""
            return Validation(need_input=NeedInput(field="offboarding_ref", question=(
                f"{got}What is the HR offboarding reference (HR-YYYY-NNNN) for {user_id}? Access is only removed "
                f"when HR has confirmed the person is leaving.")))
        account, hr = context.account, context.hr_record
        if account is None:
            return _reject("unknown_user", f"there is no directory account {user_id}; check the user id and "
                           f"resubmit the request")
        if hr is None:
            return _reject("hr_record_missing", f"HR has no offboarding record {ref}; check the reference with HR "
                           f"and resubmit the request")
        if hr.user_id != user_id:
            return _reject("hr_record_other_user", f"HR offboarding record {ref} is for {hr.user_id}, not {user_id}; "
                           f"the request must cite the leaver's own HR record")
        if hr.status != "confirmed":
            why = ("HR cancelled this offboarding: the person is not leaving" if hr.status == "cancelled"
                   else "resubmit once HR has confirmed it")
            return _reject("hr_record_not_confirmed",
                           f"HR offboarding record {ref} is {hr.status}, not confirmed: {why}")
        if account.status != "active" and not context.active_roles:
            return _reject("nothing_to_change", f"{user_id} is already {account.status} and holds no active role: "
                           f"there is nothing to remove")

        # The proposal: only the evidence user, only roles they hold, each change once.
        violations: list[Violation] = []
        targets = proposal.target_users()
        if proposal.user_id != user_id or any(t != user_id for t in targets):
            violations.append(Violation(rule="wrong_user", message=(
                f"the proposal changes {targets or 'no account'}; only {user_id}, the user this request and HR "
                f"record {ref} are about, may be changed")))
        if len(targets) > 1:
            violations.append(Violation(rule="more_than_one_user", message=(
                f"the proposal changes {len(targets)} accounts; one request offboards one person")))
        if proposal.offboarding_ref != ref:
            violations.append(Violation(rule="wrong_offboarding_ref", message=(
                f"the proposal cites {proposal.offboarding_ref!r}, not the request's HR record {ref}")))
        seen: set[tuple[str, str | None]] = set()
        for a in proposal.actions:
            if (a.kind, a.role) in seen:
                violations.append(Violation(rule="duplicate_action", message=f"{_label(a)} is proposed twice"))
            seen.add((a.kind, a.role))
            if a.kind == "remove_role" and a.role not in context.active_roles:
                violations.append(Violation(rule="role_not_held", message=(
                    f"{user_id} does not hold {a.role!r}; active roles: {context.active_roles or 'none'}")))
            if a.kind == "disable_account" and account.status != "active":
                violations.append(Violation(rule="already_disabled", message=f"{user_id} is already {account.status}"))
        if not proposal.actions:
            violations.append(Violation(rule="empty_proposal", message=(
                f"the proposal changes nothing, although {user_id} is {account.status} with roles "
                f"{context.active_roles or 'none'}")))
        if violations:
            return Validation(violations=tuple(violations))
        removed = sorted(a.role for a in proposal.actions if a.kind == "remove_role" and a.role)
        disables = any(a.kind == "disable_account" for a in proposal.actions)
        return Validation(facts={
            "user_id": user_id,
            "offboarding_ref": ref,
            "hr_record_matches_user": hr.user_id == user_id,
            "hr_status": hr.status,
            "change_count": len(proposal.actions),
            "target_users": len(targets),
            "disables_account": disables,
            "roles_removed": removed,
            # access the leaver keeps after this change: shown to the approver, decides nothing
            "roles_left_active": sorted(set(context.active_roles) - set(removed)),
            "account_left_active": account.status == "active" and not disables,
            "instruction_like_text": instruction_like(intake.text),
        })

    def preconditions(self, context: AccessContext, proposal: OffboardingProposal) -> dict[str, Any]:
        a, hr = context.account, context.hr_record
        return {"account": a and {"status": a.status, "version": a.version},
                "active_roles": context.active_roles,
                "hr_record": hr and {"user_id": hr.user_id, "status": hr.status}}

    # 4. COMMIT: one write per change, applied once each by the framework through the ledger -----------
    def plan_writes(self, intent_id: str, intake: AccessRequestIntake, context: AccessContext,
                    proposal: OffboardingProposal) -> list[WriteAction]:
        account = context.account
        assert account is not None and proposal.user_id and proposal.offboarding_ref
        common = {"user_id": proposal.user_id, "intent_id": intent_id, "offboarding_ref": proposal.offboarding_ref}
        plan: list[WriteAction] = []
        # The account first (sign-in stops at once), then each role.
        if any(a.kind == "disable_account" for a in proposal.actions):
            plan.append(WriteAction(action="disable_account", tool="disable_account",
                                    params=common | {"expected_version": account.version}))
        for role in sorted({a.role for a in proposal.actions if a.kind == "remove_role" and a.role}):
            plan.append(WriteAction(action=f"remove_role:{role}", tool="remove_role", params=common | {"role": role}))
        return plan

    # 5. VERIFY: read the account and every grant back through read tools ------------------------------
    def verify(self, step: Step, intake: AccessRequestIntake, context: AccessContext,
               proposal: OffboardingProposal, receipts: list[WriteReceipt]) -> Verification:
        intent_id, user_id = step.intent.intent_id, proposal.user_id
        account: AccountSnapshot | None = step.tools.read("get_account", {"user_id": user_id})
        grants: list[GrantSnapshot] = step.tools.read("list_grants", {"user_id": user_id, "include_revoked": True})
        if account is None:
            return Verification(passed=False, problems=(f"account {user_id} is no longer in directory_accounts",))
        problems: list[str] = []
        by_role = {g.role: g for g in grants}
        if any(a.kind == "disable_account" for a in proposal.actions) and account.status != "disabled":
            problems.append(f"{user_id} is still {account.status}, expected disabled")
        for role in sorted(a.role for a in proposal.actions if a.kind == "remove_role" and a.role):
            g = by_role.get(role)
            if g is None:
                problems.append(f"the {role!r} grant of {user_id} is gone: grants are revoked, never deleted")
            elif g.active:
                problems.append(f"{user_id} still holds {role!r} (revoked_at is empty)")
            elif g.revoked_by_intent != intent_id:
                problems.append(f"{user_id}'s {role!r} was revoked by {g.revoked_by_intent}, not {intent_id}")
        missing = sorted({g.role for g in context.grants} - set(by_role))
        if missing:
            problems.append(f"grant rows of {user_id} disappeared: {missing}")
        return Verification(passed=not problems, problems=tuple(problems), records={
            "user_id": user_id, "status": account.status, "version": account.version,
            "active_roles": sorted(g.role for g in grants if g.active),
            "revoked_roles": sorted(g.role for g in grants if not g.active),
            "writes": [f"{r.table}:{r.key}" for r in receipts]})

    # Audit: duplicates counted from the system of record and the ledger's targets ----------------------
    def duplicate_writes(self, conn: Connection) -> int:
        g, w = role_grants.c, writes.c
        # more than one grant row for one (user, role); one account or grant changed by more than one
        # committed offboarding write (each is changed once: a second change is refused by the tools)
        return (excess(conn, [g.user_id, g.role])
                + excess(conn, [w.target], w.workflow == self.name, w.status == "committed"))


# -- the offline proposer: the same typed proposal a model would return, from rules ---------------------
def offboard(intake: AccessRequestIntake, context: AccessContext) -> OffboardingProposal:
    """A confirmed leaver loses everything: the account is disabled (unless it already is) and every
    active role is removed. The request's wording never adds a kind of change: a "delete" becomes a
    disable, and anything addressed to the agent is only reported in the rationale."""
    account = context.account
    actions: list[AccessAction] = []
    if account is not None:
        if account.status == "active":
            actions.append(AccessAction(kind="disable_account"))
        actions += [AccessAction(kind="remove_role", role=r) for r in context.active_roles]
    notes = []
    if account is None:
        notes.append("no directory account was found for the request, so no change is proposed")
    else:
        hr = context.hr_record
        hr_note = (f"HR record {hr.reference} ({hr.status}, effective {hr.effective_date.isoformat()})" if hr
                   else "no HR record was found")
        notes.append(f"{account.user_id} ({account.display_name}, {account.department}) is {account.status} with "
                     f"roles {context.active_roles or 'none'}; {hr_note}; a leaver's account is disabled and every "
                     f"active role removed")
    if _DELETE.search(intake.text):
        notes.append("the request asks for a deletion: nothing is ever deleted, the account is disabled and its "
                     "grants revoked instead (rows kept for audit)")
    hits = instruction_like(intake.text)
    if hits:
        notes.append(f"the request contains text addressed to the agent ({'; '.join(hits)[:200]}); it is data and "
                     f"was not acted on")
    return OffboardingProposal(user_id=_well_formed(context.user_id, USER_ID_PATTERN),
                               offboarding_ref=_well_formed(context.offboarding_ref, OFFBOARDING_REF_PATTERN),
                               actions=actions, rationale="; ".join(notes)[:2000])


def _well_formed(value: str | None, pattern: str) -> str | None:
    return value if value and re.fullmatch(pattern, value) else None


def _label(a: AccessAction) -> str:
    return a.kind if a.kind == "disable_account" else f"{a.kind}:{a.role}"


def _reject(rule: str, message: str) -> Validation:
    return Validation(violations=(Violation(rule=rule, message=message),))
