"""Great Expectations 1.x suites, run on pandas frames. GE is imported on first use (it costs ~4 s),
never at code-location load. Suites are code: a name plus a function returning expectations."""

import functools
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
from pydantic import BaseModel

SuiteBuilder = Callable[[Any], list[Any]]  # receives great_expectations.expectations, returns expectations


class SuiteResult(BaseModel, frozen=True):
    suite: str
    asset: str  # the system-of-record table the suite guards, e.g. "sor/staged_invoice_lines"
    passed: bool
    evaluated: int
    failed: tuple[dict[str, Any], ...]

    def metadata(self) -> dict[str, Any]:
        return {"suite": self.suite, "evaluated": self.evaluated, "failed": list(self.failed)}


def warm_up() -> None:
    """Start importing Great Expectations in the background. A run worker is a fresh process: called at
    its first step, the import overlaps the read and propose steps instead of stalling validate."""
    if "great_expectations.expectations" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("great_expectations.expectations",),
                         name="great-expectations-warm-up", daemon=True).start()


@functools.cache
def _validation(suite_name: str, builder: SuiteBuilder) -> Any:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm noise in run logs
    batch = ctx.data_sources.add_pandas("frames").add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=suite_name))
    for expectation in builder(gxe):
        suite.add_expectation(expectation)
    return ctx.validation_definitions.add(gx.ValidationDefinition(name=f"{suite_name}.vd", data=batch, suite=suite))


def run_suite(suite_name: str, asset: str, builder: SuiteBuilder, frame: pd.DataFrame) -> SuiteResult:
    """One validation per frame (a batch of rows), never one per row."""
    res = _validation(suite_name, builder).run(batch_parameters={"dataframe": frame}, result_format="SUMMARY")
    failed = tuple(
        {"expectation": r.expectation_config.type, "column": r.expectation_config.kwargs.get("column"),
         "unexpected_count": r.result.get("unexpected_count"), "observed": str(r.result.get("observed_value")),
         "sample": [str(v) for v in (r.result.get("partial_unexpected_list") or [])[:5]]}
        for r in res.results if not r.success)
    return SuiteResult(suite=suite_name, asset=asset, passed=bool(res.success),
                       evaluated=int(res.statistics["evaluated_expectations"]), failed=failed)
