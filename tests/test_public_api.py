"""The README's "Guardrails as a library" example runs as written (on this backend's database)."""

import re
from pathlib import Path

from sqlalchemy import func, select

from agent_pipelines.framework.tables import policy_decisions, tool_calls, writes

README = Path(__file__).resolve().parent.parent / "README.md"


def example() -> str:
    text = README.read_text()
    marker = text.index("<!-- public-api-example")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)  # type: ignore[union-attr]


def test_readme_guardrails_example_runs_and_is_enforced(project, capsys):
    code = example().replace('Database("sqlite:///refunds.db")', f'Database("{project.settings.db_url}")')
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})  # noqa: S102
    printed = capsys.readouterr().out
    assert "order_id" in printed and "amount_cents: 99999 > max 50000" in printed
    with project.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(writes)).scalar_one() == 1
        rules = conn.execute(select(policy_decisions.c.rule)).scalars().all()
        statuses = conn.execute(select(tool_calls.c.status).order_by(tool_calls.c.id)).scalars().all()
    assert rules == ["param_constraint"] and statuses == ["ok", "ok", "blocked"]
