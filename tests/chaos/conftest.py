"""The chaos suite (marked pg_leg: the PostgreSQL leg of ./scripts/test only, see tests/conftest.py). A
missing server or a cluster that cannot be created fails it. The figures of every scenario add up to one line, printed at the end of the session
(terminal summary, so CI logs show it) and written to <basetemp>/chaos.txt."""


import pytest

from tests.chaos.harness import Figures

FIGURES = Figures()


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Figures:
    yield FIGURES
    line = FIGURES.line()
    print("\n" + line)
    (tmp_path_factory.getbasetemp() / "chaos.txt").write_text(line + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    if FIGURES.scenarios:
        terminalreporter.write_sep("-", "chaos")
        terminalreporter.write_line(FIGURES.line())
        terminalreporter.write_line("scenarios: " + ", ".join(FIGURES.scenarios))
