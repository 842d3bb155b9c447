"""Intent states and the transitions between them: the one place where legality is decided."""

from enum import StrEnum


class IntentState(StrEnum):
    RECEIVED = "received"
    RUNNING = "running"
    WAITING_FOR_INPUT = "waiting_for_input"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    COMMITTING = "committing"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    DENIED = "denied"
    REJECTED_INPUT = "rejected_input"
    EXPIRED = "expired"
    FAILED = "failed"
    NEEDS_ATTENTION = "needs_attention"
    QUARANTINED = "quarantined"
    PARKED = "parked"  # stopped mid-flight by a kill switch; resumed when the switch is turned off


S = IntentState

# Terminal states accept no further transition. needs_attention and failed are not terminal: an
# operator re-executes the run (failed -> running) or resolves the intent by hand.
TERMINAL: frozenset[IntentState] = frozenset({S.COMPLETED, S.DENIED, S.REJECTED_INPUT, S.EXPIRED})

_PARK = {S.WAITING_FOR_INPUT, S.WAITING_FOR_APPROVAL, S.DENIED, S.REJECTED_INPUT}
_TROUBLE = {S.FAILED, S.NEEDS_ATTENTION, S.QUARANTINED, S.PARKED}

ALLOWED: dict[IntentState, frozenset[IntentState]] = {
    S.RECEIVED: frozenset({S.RUNNING, S.REJECTED_INPUT, S.NEEDS_ATTENTION, S.QUARANTINED}),
    S.RUNNING: frozenset({S.COMMITTING, *_PARK, *_TROUBLE}),
    S.WAITING_FOR_INPUT: frozenset({S.RUNNING, S.EXPIRED, S.REJECTED_INPUT, *_TROUBLE}),
    S.WAITING_FOR_APPROVAL: frozenset({S.COMMITTING, S.RUNNING, S.DENIED, S.EXPIRED, *_TROUBLE}),
    # Recovery: an intent whose run died in commit with nothing in the ledger starts again from read;
    # one with writes (or one that died in verify) commits again, where the ledger returns what landed.
    S.COMMITTING: frozenset({S.RUNNING, S.VERIFYING, *_TROUBLE}),
    S.VERIFYING: frozenset({S.COMMITTING, S.COMPLETED, *_TROUBLE}),
    # A re-execution of a failed run resumes at the step that failed, hand off included.
    S.FAILED: frozenset({S.RUNNING, S.COMMITTING, S.VERIFYING, S.COMPLETED, S.NEEDS_ATTENTION, S.QUARANTINED,
                         S.PARKED}),
    S.NEEDS_ATTENTION: frozenset({S.RUNNING, S.COMMITTING, S.VERIFYING, S.FAILED, S.QUARANTINED, S.PARKED}),
    S.QUARANTINED: frozenset({S.RUNNING, S.NEEDS_ATTENTION}),
    # Released by turning the kill switch off: the main job restarts at running (the ledger keeps
    # writes once), an approved continuation goes straight back to committing.
    S.PARKED: frozenset({S.RUNNING, S.COMMITTING, S.WAITING_FOR_APPROVAL, S.NEEDS_ATTENTION, S.QUARANTINED,
                         S.FAILED}),
    S.COMPLETED: frozenset(),
    S.DENIED: frozenset(),
    S.REJECTED_INPUT: frozenset(),
    S.EXPIRED: frozenset(),
}


class IllegalTransition(RuntimeError):
    def __init__(self, intent_id: str, current: IntentState, target: IntentState) -> None:
        super().__init__(f"intent {intent_id}: {current} -> {target} is not an allowed transition")
        self.intent_id, self.current, self.target = intent_id, current, target


def check_transition(intent_id: str, current: IntentState, target: IntentState) -> None:
    if target not in ALLOWED[current]:
        raise IllegalTransition(intent_id, current, target)
