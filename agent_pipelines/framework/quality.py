"""Great Expectations 1.x suites, run on pandas frames. GE is imported on first use (it costs ~4 s),
never at code-location load. Suites are code: a name plus a function returning expectations.

A workflow's step returns SuiteChecks (a suite and the rows it must pass; plain rows, since 500
one-row frames cost more than their validation); the framework runs them. A batch of intents is
validated as one frame per suite, built once from all their rows, each row tagged with its intent
(OWNER); a suite's derived columns are computed once on that frame (`derive`, per intent where they
must be: a groupby on OWNER); each intent gets the failures of its own rows. Suites must therefore be
row-level: a per-intent table property (a row count, a uniqueness within one document) is a derived
column or a compound key with OWNER, never a table-level expectation (which cannot say whose rows failed, so it fails them all)."""

import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


OWNER = "__intent"  # the column a batched frame carries: which intent each row belongs to
Rows = Sequence[Mapping[str, Any]]  # what a step hands a suite: a few row dicts


@dataclass(frozen=True)
class SuiteCheck:
    """A suite to run on some rows: what a workflow's validate or verify step hands the framework. `data`
    is a sequence of row dicts (a step's few rows) or a frame (an asset check's whole table); `derive`
    adds the suite's computed columns to the frame of every owner's rows (it sees OWNER)."""

    suite: str
    asset: str
    builder: SuiteBuilder
    data: pd.DataFrame | Rows
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None


def _frame(items: Sequence[tuple[str, SuiteCheck]]) -> pd.DataFrame:
    """All the owners' rows as one frame with OWNER, built once (rows) or concatenated (frames)."""
    if all(not isinstance(c.data, pd.DataFrame) for _, c in items):
        return pd.DataFrame.from_records([{**row, OWNER: owner} for owner, c in items for row in c.data])
    return pd.concat([(c.data if isinstance(c.data, pd.DataFrame) else pd.DataFrame.from_records(c.data))
                      .assign(**{OWNER: owner}) for owner, c in items], ignore_index=True)


def run_checks(checks: Sequence[SuiteCheck]) -> tuple[SuiteResult, ...]:
    """One intent's checks (the per-intent job, the reviewer console's re-validation)."""
    results = evaluate([("one", c) for c in checks])
    return tuple(results.get("one", ()))


def evaluate(owned: Sequence[tuple[str, SuiteCheck]]) -> dict[str, list[SuiteResult]]:
    """Run every suite once over the rows of all its owners (intent ids) and give each owner its own
    result: one Great Expectations validation per suite per batch, never one per intent."""
    groups: dict[tuple[str, str], list[tuple[str, SuiteCheck]]] = defaultdict(list)
    for owner, check in owned:
        groups[(check.suite, check.asset)].append((owner, check))
    out: dict[str, list[SuiteResult]] = defaultdict(list)
    for (suite, asset), items in groups.items():
        frame = _frame(items)
        derive = items[0][1].derive
        if derive is not None and len(frame):  # (no rows at all: the suite fails on its missing columns)
            frame = derive(frame)
        res = _validation(suite, items[0][1].builder).run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [OWNER]})
        owners = list(dict.fromkeys(owner for owner, _ in items))
        failed: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in res.results:
            if r.success:
                continue
            index = r.result.get("unexpected_index_list")
            rows = Counter(row[OWNER] for row in index) if index is not None else None
            values = r.result.get("unexpected_list") or []
            for owner in (rows or owners):  # no row index (table-level): every owner fails, closed
                sample = [str(v) for v, i in zip(values, index or [], strict=False) if i[OWNER] == owner][:5] if rows else \
                    [str(v) for v in values[:5]]
                failed[owner].append({"expectation": r.expectation_config.type,
                                      "column": r.expectation_config.kwargs.get("column"),
                                      "unexpected_count": rows[owner] if rows else r.result.get("unexpected_count"),
                                      "observed": str(r.result.get("observed_value")), "sample": sample})
        evaluated = int(res.statistics["evaluated_expectations"])
        for owner in owners:
            out[owner].append(SuiteResult(suite=suite, asset=asset, passed=not failed[owner], evaluated=evaluated,
                                          failed=tuple(failed[owner])))
    return out


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
