"""The correction split books each period's lines in that period, on the right date."""

from __future__ import annotations

import datetime as dt

import pytest

from nmbrs_visma.journals.frame import empty_lines
from nmbrs_visma.journals.models import ClosedPeriodPolicy, PayrollRun
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml
from nmbrs_visma.journals.split import booking_date, next_open_period, period_bounds, split_by_period, target_period

from .builders import MARCH_WITH_CORRECTION, demo_reference, journal_xml, line_xml, make_run


def test_groups_by_header_period_not_date(run: PayrollRun) -> None:
    lines = parse_journal_xml(MARCH_WITH_CORRECTION)
    journals = split_by_period(lines, run)
    assert [j.period_id for j in journals] == ["202601", "202603"]
    january, march = journals
    assert january.is_correction and not march.is_correction
    assert january.transaction_date == dt.date(2026, 1, 31)  # a correction: its period's last day
    assert march.transaction_date == dt.date(2026, 3, 25)  # the run's own period: the header date
    assert len(january.lines) + len(march.lines) == len(lines)
    assert january.lines["debit_cents"].tolist() == [-10050, 0]  # a negative amount stays on its side
    assert january.moved_from == () and january.note == ""
    assert january.reference == march.reference == run.reference == "NM2603R1"  # the normal run's reference


def test_header_date_outside_own_period_is_clamped_to_its_last_day(run: PayrollRun) -> None:
    lines = parse_journal_xml(journal_xml([("20260405", "3/2026", [line_xml("4000", "1")])]))
    assert split_by_period(lines, run)[0].transaction_date == dt.date(2026, 3, 31)


def test_uses_visma_period_dates_when_known(run: PayrollRun) -> None:
    reference = demo_reference()
    periods = dict(reference.periods)
    periods["202601"] = periods["202601"].model_copy(update={"end_date": dt.date(2026, 1, 28)})
    lines = parse_journal_xml(MARCH_WITH_CORRECTION)
    assert split_by_period(lines, run, periods=periods)[0].transaction_date == dt.date(2026, 1, 28)


def test_next_open_moves_a_closed_period_and_says_so() -> None:
    run = make_run(year=2025, period=8)
    lines = parse_journal_xml(
        journal_xml(
            [
                ("20250825", "8/2025", [line_xml("4000", "5"), line_xml("1700", "5", "credit")]),
                ("20250825", "5/2025", [line_xml("4000", "2"), line_xml("1700", "2", "credit")]),
                ("20250825", "6/2025", [line_xml("4000", "3"), line_xml("1700", "3", "credit")]),
            ]
        )
    )
    periods = demo_reference().periods  # 202501..202506 closed
    refuse = split_by_period(lines, run, periods=periods)
    assert [j.period_id for j in refuse] == ["202505", "202506", "202508"]
    moved = split_by_period(lines, run, periods=periods, policy=ClosedPeriodPolicy.NEXT_OPEN)
    # each payroll period stays its own journal (its identity), both moved into July, the first open period
    assert [(j.payroll_period, j.period_id) for j in moved] == [("202505", "202507"), ("202506", "202507"),
                                                                 ("202508", "202508")]  # fmt: skip
    may, june, august = moved
    assert (may.moved_from, june.moved_from, august.moved_from) == (("202505",), ("202506",), ())
    assert "202505 booked in 202507" in may.note
    assert may.is_correction and may.transaction_date == dt.date(2025, 7, 31)
    assert len(may.lines) == 2 and len(june.lines) == 2 and not august.is_correction


def test_period_helpers() -> None:
    periods = demo_reference().periods
    assert period_bounds("202602") == (dt.date(2026, 2, 1), dt.date(2026, 2, 28))
    assert period_bounds("202413") is None
    assert next_open_period("202503", periods) == "202507"
    assert next_open_period("202612", periods) is None
    assert target_period("202503", periods, ClosedPeriodPolicy.NEXT_OPEN) == "202507"
    assert target_period("202503", periods, ClosedPeriodPolicy.REFUSE) == "202503"
    assert target_period("202612", periods, ClosedPeriodPolicy.NEXT_OPEN) == "202612"  # inactive, not closed
    with pytest.raises(ValueError, match="company 1002 run 1"):
        booking_date("202613", make_run(), None, None)


def test_four_weekly_period_without_calendar_falls_back_to_header_date() -> None:
    run = make_run(period=13)
    lines = parse_journal_xml(journal_xml([("20261231", "13/2026", [line_xml("4000", "1")])]))
    assert split_by_period(lines, run)[0].transaction_date == dt.date(2026, 12, 31)


def test_empty_frame_gives_no_journals(run: PayrollRun) -> None:
    assert split_by_period(empty_lines(), run) == []
