"""The line frame: one row per Nmbrs journal line, the single shape every step after parsing works on.

Schema (docs/architecture.md): amounts are int64 cents, texts are pandas strings with `""` for missing.
A frame holding several runs carries one extra column, `run_id` (the Nmbrs payrollRunId), so a whole batch
of companies is checked and built in one vectorised pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nmbrs_visma.journals.models import JournalLine
from nmbrs_visma.journals.money import MAX_SUM_CENTS, to_cents

STRING = "str"

COLUMNS: dict[str, str] = {
    "transaction": "int32",
    "line": "int32",
    "period_id": STRING,
    "date": "datetime64[ns]",
    "account": STRING,
    "cost_center": STRING,
    "cost_unit": STRING,
    "debit_cents": "int64",
    "credit_cents": "int64",
    "description": STRING,
}
RUN_COLUMN = "run_id"
TEXT_COLUMNS = tuple(name for name, dtype in COLUMNS.items() if dtype == STRING)
_PERIOD = re.compile(r"\d{4}(?:0[1-9]|[1-4]\d|5[0-3])", re.ASCII)


class LineFrameError(ValueError):
    """A frame that does not follow the line-frame schema."""


def empty_lines(*, with_run: bool = False) -> pd.DataFrame:
    """A line frame without rows, every column of its schema dtype."""
    return make_lines({name: [] for name in COLUMNS} | ({RUN_COLUMN: []} if with_run else {}))


def make_lines(columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """Build a line frame from column sequences (all schema columns, optionally `run_id`), cast to the schema."""
    names = list(COLUMNS) + ([RUN_COLUMN] if RUN_COLUMN in columns else [])
    missing = [name for name in names if name not in columns]
    if missing:
        raise LineFrameError(f"line frame misses columns {missing}")
    dtypes = COLUMNS | {RUN_COLUMN: STRING}
    return pd.DataFrame({name: pd.Series(columns[name], dtype=dtypes[name]) for name in names})


def lines_from_records(records: Iterable[JournalLine], *, run_id: str | None = None) -> pd.DataFrame:
    """A line frame from `JournalLine` models (tests, previews, hand-made journals)."""
    rows = list(records)
    columns: dict[str, list[Any]] = {
        "transaction": [r.transaction for r in rows],
        "line": [r.line for r in rows],
        "period_id": [r.period_id for r in rows],
        "date": [pd.Timestamp(r.date) for r in rows],
        "account": [r.account for r in rows],
        "cost_center": [r.cost_center for r in rows],
        "cost_unit": [r.cost_unit for r in rows],
        "debit_cents": [to_cents(r.debit) for r in rows],
        "credit_cents": [to_cents(r.credit) for r in rows],
        "description": [r.description for r in rows],
    }
    if run_id is not None:
        columns[RUN_COLUMN] = [run_id] * len(rows)
    return make_lines(columns)


def validate_lines(lines: pd.DataFrame, *, require_run: bool = False, key_nulls: bool = True) -> None:
    """Raise `LineFrameError` unless `lines` follows the schema: columns, dtypes, no missing values, periods.

    Cheap (vectorised), so every public entry point of the core can afford to call it. `key_nulls=False`
    leaves the missing-value check of the group keys to `aggregate_lines`, which makes it on its far
    smaller result (the batch path of `build.build_many`).
    """
    expected = COLUMNS | ({RUN_COLUMN: STRING} if require_run or RUN_COLUMN in lines.columns else {})
    missing = [name for name in expected if name not in lines.columns]
    if missing:
        raise LineFrameError(f"line frame misses columns {missing}")
    wrong = {name: str(lines[name].dtype) for name, dtype in expected.items() if not _dtype_matches(lines[name], dtype)}
    if wrong:
        raise LineFrameError(f"line frame columns with the wrong dtype (expected {expected}): {wrong}")
    nullable = [
        name
        for name, dtype in expected.items()
        if dtype in (STRING, COLUMNS["date"]) and (key_nulls or name not in GROUP_KEYS)
    ]
    nulls = [name for name in nullable if lines[name].isna().any()]
    if nulls:
        raise LineFrameError(f"line frame has missing values in {nulls} (use '' for a missing text)")
    distinct = pd.unique(lines["period_id"])  # few distinct periods
    bad_periods = [p for p in distinct if not (isinstance(p, str) and _PERIOD.fullmatch(p))]
    if bad_periods:
        row = lines.loc[lines["period_id"].isin(bad_periods)].iloc[0]
        raise LineFrameError(
            f"transaction {row['transaction']} line {row['line']}: period_id {row['period_id']!r} is not YYYYPP"
        )
    both = (lines["debit_cents"] != 0) & (lines["credit_cents"] != 0)
    if both.any():
        row = lines.loc[both].iloc[0]
        raise LineFrameError(f"transaction {row['transaction']} line {row['line']}: both a debit and a credit amount")


def _dtype_matches(series: pd.Series, dtype: str) -> bool:
    if dtype == STRING:
        return pd.api.types.is_string_dtype(series.dtype)
    if dtype.startswith("datetime64"):
        return pd.api.types.is_datetime64_dtype(series.dtype)
    return series.dtype == dtype


GROUP_KEYS = (RUN_COLUMN, "period_id", "account", "cost_center", "cost_unit")


@dataclass(frozen=True)
class OversizedRun:
    """A run whose amounts could sum past `MAX_SUM_CENTS`: its biggest line, and the sum of its magnitudes."""

    run_id: str
    transaction: int
    line: int
    side: str  # "debit" or "credit": the biggest line's side
    cents: int  # the biggest line's amount on that side
    magnitude: int  # the sum of |debit| + |credit| over the run's lines, in cents (exact, Python ints)


def runs_past_sum_limit(lines: pd.DataFrame) -> dict[str, OversizedRun]:
    """The runs (by `run_id`) in which some sum of cents could reach `MAX_SUM_CENTS`, so an int64 sum may wrap.

    The bound is the run's sum of magnitudes: no sum of its lines, per account, per period or in all, can be
    bigger. Cheap when nothing is near the bound (two min/max scans over the frame decide it for every run);
    only then are the magnitudes summed per run, as floats (a bound with room to spare, not an amount)."""
    if lines.empty:
        return {}
    debit, credit = lines["debit_cents"].to_numpy(), lines["credit_cents"].to_numpy()
    biggest = max(int(debit.max()), -int(debit.min()), int(credit.max()), -int(credit.min()))
    if biggest * len(lines) < MAX_SUM_CENTS:
        return {}
    magnitude = np.abs(debit.astype(np.float64)) + np.abs(credit.astype(np.float64))
    runs = lines[RUN_COLUMN] if RUN_COLUMN in lines.columns else pd.Series("", index=lines.index, dtype=STRING)
    work = pd.DataFrame({"run": runs.to_numpy(), "magnitude": magnitude})
    totals = work.groupby("run", sort=False)["magnitude"].sum()
    oversized: dict[str, OversizedRun] = {}
    for run_id in totals[totals >= MAX_SUM_CENTS].index:
        rows = np.flatnonzero(work["run"].to_numpy() == run_id)
        row = int(rows[np.argmax(magnitude[rows])])
        side, cents = ("debit", int(debit[row])) if debit[row] else ("credit", int(credit[row]))
        line = lines.iloc[row]
        where = (int(line["transaction"]), int(line["line"]))
        exact = sum(abs(int(debit[i])) + abs(int(credit[i])) for i in rows)  # the float total only screened
        oversized[str(run_id)] = OversizedRun(str(run_id), *where, side, cents, exact)
    return oversized


def aggregate_lines(lines: pd.DataFrame) -> pd.DataFrame:
    """Lines summed per (run, period, account, cost center, cost unit), sorted by those keys.

    Debit and credit are summed separately (never netted against each other). Each row keeps
    its first line in frame order, i.e. document order (`transaction`, `line`, for messages), the latest header
    `date` and the first `description`. Needs the `run_id` column. The key columns come back categorical
    (built from the groupby's own codes, no hashing), so grouping the result again is cheap.
    """
    grouped = lines.groupby(list(GROUP_KEYS), sort=True, observed=True, dropna=False)
    # One reduction per kind on the shared grouper: named aggregation sets up anew on every call, work that
    # outweighs the sums themselves on a run's few hundred lines.
    firsts = grouped[["transaction", "line", "description"]].first()
    result = pd.concat(
        [grouped[["debit_cents", "credit_cents"]].sum(), firsts[["transaction", "line"]], grouped["date"].max()],
        axis=1,
    ).assign(description=firsts["description"])
    index = result.index
    for level, name in enumerate(GROUP_KEYS):
        # A missing key would be a group pandas drops by default (lines lost); kept here, and refused.
        missing_codes = np.flatnonzero(pd.isna(index.levels[level]))
        missing = (index.codes[level] == -1) | np.isin(index.codes[level], missing_codes)
        if missing.any():
            row = result.iloc[int(np.flatnonzero(missing)[0])]
            raise LineFrameError(
                f"transaction {row['transaction']} line {row['line']}: missing {name} (use '' for a missing text)"
            )
    keys = {
        name: pd.Categorical.from_codes(index.codes[level], categories=index.levels[level])
        for level, name in enumerate(GROUP_KEYS)
    }
    return pd.DataFrame(keys).join(result.reset_index(drop=True))
