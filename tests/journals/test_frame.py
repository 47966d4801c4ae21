"""The line-frame schema is enforced at the entry points of the core."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import pytest

from nmbrs_visma.journals.frame import (
    COLUMNS,
    LineFrameError,
    aggregate_lines,
    empty_lines,
    lines_from_records,
    validate_lines,
)
from nmbrs_visma.journals.models import JournalLine
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml

from .builders import MARCH_WITH_CORRECTION


def test_empty_lines_follow_the_schema() -> None:
    frame = empty_lines()
    assert {name: str(frame[name].dtype) for name in frame.columns} == COLUMNS
    validate_lines(frame)
    assert "run_id" in empty_lines(with_run=True).columns


def test_lines_from_records_round_trip() -> None:
    record = JournalLine(
        transaction=1, line=1, period_id="202603", date=dt.date(2026, 3, 25), account="4000",
        debit=Decimal("12.3"), description="Bruto",
    )  # fmt: skip
    frame = lines_from_records([record], run_id="r")
    validate_lines(frame, require_run=True)
    assert frame["debit_cents"].tolist() == [1230] and frame["cost_center"].tolist() == [""]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="account"), "misses columns"),
        (lambda f: f.assign(debit_cents=f["debit_cents"].astype(float)), "wrong dtype"),
        (lambda f: f.assign(account=f["account"].where(f["line"] != 2, None)), "missing values"),
        (lambda f: f.assign(period_id="2026-3"), "is not YYYYPP"),
        (lambda f: f.assign(credit_cents=f["debit_cents"]), "both a debit and a credit"),
    ],
)
def test_validator_refuses(change, message: str) -> None:
    with pytest.raises(LineFrameError, match=message):
        validate_lines(change(parse_journal_xml(MARCH_WITH_CORRECTION)))
    with pytest.raises(LineFrameError, match="run_id"):
        validate_lines(parse_journal_xml(MARCH_WITH_CORRECTION), require_run=True)


def test_aggregate_keeps_sides_apart_and_first_line() -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION)
    lines = pd.concat([lines, lines.iloc[[0]].assign(line=7)], ignore_index=True)
    lines["run_id"] = pd.Series("r", index=lines.index, dtype="str")
    aggregated = aggregate_lines(lines)
    first = aggregated[(aggregated["account"] == "4000") & (aggregated["cost_center"] == "100")]
    assert first[["period_id", "debit_cents", "transaction", "line"]].astype(object).values.tolist() == [
        ["202601", -10050, 2, 1],
        ["202603", 500000, 1, 1],
    ]
    assert aggregated["debit_cents"].sum() == lines["debit_cents"].sum()
    assert aggregated["credit_cents"].sum() == lines["credit_cents"].sum()


def test_missing_key_is_refused_by_the_batch_path_not_dropped() -> None:
    """pandas drops groups with a missing key by default: the batch path must refuse them instead."""
    from nmbrs_visma.journals.build import build_many

    lines = parse_journal_xml(MARCH_WITH_CORRECTION)
    lines["run_id"] = pd.Series("r", index=lines.index, dtype="str")
    lines["cost_unit"] = lines["cost_unit"].where(lines["line"] != 4, None)
    with pytest.raises(LineFrameError, match="transaction 1 line 4: missing cost_unit"):
        aggregate_lines(lines)
    with pytest.raises(LineFrameError, match="missing cost_unit"):
        build_many(lines, {})
