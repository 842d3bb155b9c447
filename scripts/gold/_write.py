"""Shared by the gold-case generators: write a gold file (framework/gold.py) as reviewable YAML."""

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

HEADER = """# Gold cases of {workflow} (format: agent_pipelines/framework/gold.py). `agent-pipelines evals run` and
# tests/test_evals.py (the CI gate) run every case through the real workflow and fail on any mismatch.
# First written by scripts/gold/{workflow}.py; this YAML is the source of truth: edit the expectation
# here, in the same commit as the change that moves it. Expectations follow the business rules
# ({rules}), checked case by case, not whatever the code returned.
"""


def write(workflow: str, rules: str, description: str, cases: list[dict[str, Any]],
          shared: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    doc: dict[str, Any] = {"workflow": workflow, "description": description}
    if shared:
        doc["shared"] = shared
    doc["cases"] = cases
    path = ROOT / "agent_pipelines" / "workflows" / workflow / "gold.yaml"
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None)
    path.write_text(HEADER.format(workflow=workflow, rules=rules) + body, encoding="utf-8")
    print(f"{path}: {len(cases)} cases")
    return path


def expected(state: str, rule: str | None, writes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"state": state, "rule": rule}
    if writes:
        out["writes"] = writes
    return out
