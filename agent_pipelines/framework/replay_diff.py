"""Diff: the recorded outcome of each intent against its replay, field by field (state, decision, rule,
planned writes and their parameters, amounts included), what a changed policy pack changed, and the
summary an operator reads first: which intents a change moves, from which state to which."""

from collections import defaultdict
from typing import Any

from agent_pipelines.framework.policy import PolicyPack
from agent_pipelines.framework.run_record import PlannedWrite
from agent_pipelines.framework.replay import Outcome, Replayed


def field_diffs(recorded: Outcome, replayed: Outcome) -> dict[str, dict[str, Any]]:
    """`{field: {"recorded": …, "replayed": …}}` for every field that differs; writes by action, then
    by parameter (`writes.<action>.<param>`), so a changed amount shows as itself."""
    out: dict[str, dict[str, Any]] = {}
    if replayed.error is not None:
        out["error"] = {"recorded": None, "replayed": replayed.error}
    for name in ("state", "decision", "rule"):
        a, b = getattr(recorded, name), getattr(replayed, name)
        if a != b:
            out[name] = {"recorded": a, "replayed": b}
    before = {w.action: w for w in recorded.writes}
    after = {w.action: w for w in replayed.writes}
    for action in sorted(before.keys() | after.keys()):
        a, b = before.get(action), after.get(action)
        if a is None or b is None:
            out[f"writes.{action}"] = {"recorded": _shown(a), "replayed": _shown(b)}
            continue
        if a.tool != b.tool or a.target != b.target:
            out[f"writes.{action}.target"] = {"recorded": f"{a.tool} {a.target}", "replayed": f"{b.tool} {b.target}"}
        for param in sorted(a.params.keys() | b.params.keys()):
            if a.params.get(param) != b.params.get(param):
                out[f"writes.{action}.{param}"] = {"recorded": a.params.get(param), "replayed": b.params.get(param)}
    return out


def _shown(w: PlannedWrite | None) -> dict[str, Any] | None:
    return None if w is None else {"tool": w.tool, "target": w.target, "params": w.params}


def moves(results: list[Replayed]) -> list[dict[str, Any]]:
    """The intents whose replay ends in another state, grouped by (workflow, recorded -> replayed)."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for r in results:
        if r.replayed.error is None and r.recorded.state != r.replayed.state:
            groups[(r.workflow, str(r.recorded.state), str(r.replayed.state))].append(r.intent_id)
    return [{"workflow": wf, "from": a, "to": b, "intents": sorted(ids)} for (wf, a, b), ids in sorted(groups.items())]


def policy_changes(old: PolicyPack, new: PolicyPack) -> list[str]:
    """What differs between two packs, rule by rule (`amount_above_auto_limit 1000000→2000000`), then by
    section for everything else."""
    out: list[str] = []
    before, after = {r.name: r for r in old.rules}, {r.name: r for r in new.rules}
    for name in [r.name for r in old.rules] + [n for n in after if n not in before]:
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            out.append(f"rule {name} {'added' if a is None else 'removed'}")
            continue
        for attr in ("fact", "op", "value", "decision"):
            if getattr(a, attr) != getattr(b, attr):
                label = "" if attr == "value" else f" {attr}"
                out.append(f"{name}{label} {getattr(a, attr)}→{getattr(b, attr)}")
    old_d, new_d = old.model_dump(mode="json", exclude={"rules"}), new.model_dump(mode="json", exclude={"rules"})
    out += [f"{section} changed" for section in sorted(old_d) if old_d[section] != new_d.get(section)]
    return out


def summary(results: list[Replayed], changes: list[str]) -> list[str]:
    """One line per move: 'policy amount_above_auto_limit 1000000→2000000 moves 4 intents:
    waiting_for_approval → completed (invoice_matching): [ids]'."""
    cause = f"policy {', '.join(changes)}" if changes else "the replay"
    lines = [f"{cause} moves {len(m['intents'])} intents: {m['from']} → {m['to']} ({m['workflow']}): {m['intents']}"
             for m in moves(results)]
    other = [r for r in results if not r.reproduced and r.recorded.state == r.replayed.state]
    if other:
        lines.append(f"{cause} changes {len(other)} intent(s) without moving them: "
                     f"{sorted(r.intent_id for r in other)}")
    return lines or [f"{cause} changes no intent's outcome"]
