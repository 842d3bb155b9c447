"""Imports a run's later steps need, started in the background at its first step.

A run worker is a fresh process, and two libraries are imported on first use, never at code-location
load: the model client (instructor and openai, ~1 s) at propose, and Great Expectations (~2.5 s) at
validate. Imported in the step that needs them, they stall it: a batch's propose step waited 2.5-4.4 s
for its first request while its threads queued on the same import (~4 % of a 1,000-intent
LLM-bound step). Started at read, in one background thread and in the order the steps need them, they
load while read (and propose) work; a step that gets there first waits on Python's import lock for the
rest of that import, never imports twice."""

import importlib
import sys
import threading
from collections.abc import Sequence

GREAT_EXPECTATIONS = "great_expectations.expectations"


def in_background(modules: Sequence[str]) -> threading.Thread | None:
    """Import `modules` in order in one daemon thread (None: all already imported). `module:name` also
    gets `name` from it, for a package that imports its parts when they are first asked for."""
    todo = [m for m in modules if not _loaded(m)]
    if not todo:
        return None
    # SQLAlchemy's ORM is imported here, in the calling thread, first: Great Expectations imports it
    # too, and the step's own first use of it racing the background import finds it partially initialized.
    importlib.import_module("sqlalchemy.orm")
    thread = threading.Thread(target=_import_all, args=(todo,), name="preload-imports", daemon=True)
    thread.start()
    return thread


def _loaded(entry: str) -> bool:
    module, _, attribute = entry.partition(":")
    return module in sys.modules and (not attribute or attribute in vars(sys.modules[module]))


def _import_all(modules: list[str]) -> None:
    for entry in modules:
        module, _, attribute = entry.partition(":")
        try:
            loaded = importlib.import_module(module)
            if attribute:
                getattr(loaded, attribute)
        except (ImportError, AttributeError):  # the step that needs it fails on it again, and says why
            continue
