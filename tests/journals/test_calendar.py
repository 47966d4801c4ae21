"""Payroll period arithmetic (journals/calendar.py): ISO weeks, four-week periods, week 53, and the matching of
payroll periods to Visma.net financial periods (by number, or by the period's last day)."""

from __future__ import annotations

import calendar as stdlib_calendar
import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nmbrs_visma.journals.calendar import (
    PeriodMapping,
    PeriodType,
    financial_period,
    iso_weeks,
    payroll_period_label,
    period_dates,
    period_of,
    periods_in_year,
)
from nmbrs_visma.journals.models import FinancialPeriod

D = dt.date


def monthly_ledger(*years: int) -> dict[str, FinancialPeriod]:
    """A calendar-month ledger: period YYYYMM is that month."""
    return {
        f"{year}{month:02d}": FinancialPeriod(
            period_id=f"{year}{month:02d}",
            start_date=D(year, month, 1),
            end_date=D(year, month, stdlib_calendar.monthrange(year, month)[1]),
        )
        for year in years
        for month in range(1, 13)
    }


def fiscal_ledger_from_july(fiscal_year: int) -> dict[str, FinancialPeriod]:
    """A fiscal year that starts in July: period YYYY01 is July of the year before."""
    periods = {}
    for number in range(1, 13):
        month = (6 + number - 1) % 12 + 1
        year = fiscal_year - 1 if month >= 7 else fiscal_year
        periods[f"{fiscal_year}{number:02d}"] = FinancialPeriod(
            period_id=f"{fiscal_year}{number:02d}",
            start_date=D(year, month, 1),
            end_date=D(year, month, stdlib_calendar.monthrange(year, month)[1]),
        )
    return periods


def thirteen_period_ledger(year: int) -> dict[str, FinancialPeriod]:
    """A ledger of 13 four-week periods, dated like the four-week payroll periods."""
    return {
        f"{year}{number:02d}": FinancialPeriod(period_id=f"{year}{number:02d}", start_date=start, end_date=end)
        for number in range(1, 14)
        for start, end in [period_dates(year, number, PeriodType.FOUR_WEEKS)]
    }


@pytest.mark.parametrize(("year", "weeks"), [(2020, 53), (2021, 52), (2025, 52), (2026, 53), (2027, 52), (2032, 53)])
def test_iso_years_have_52_or_53_weeks(year: int, weeks: int) -> None:
    assert iso_weeks(year) == weeks
    assert periods_in_year(year, PeriodType.WEEK) == weeks


def test_four_week_period_1_can_start_in_december_of_the_year_before() -> None:
    assert period_dates(2026, 1, PeriodType.FOUR_WEEKS) == (D(2025, 12, 29), D(2026, 1, 25))
    assert period_dates(2027, 1, PeriodType.FOUR_WEEKS) == (D(2027, 1, 4), D(2027, 1, 31))


def test_four_week_period_13_takes_week_53_where_the_year_has_one() -> None:
    assert period_dates(2025, 13, PeriodType.FOUR_WEEKS) == (D(2025, 12, 1), D(2025, 12, 28))
    assert period_dates(2026, 13, PeriodType.FOUR_WEEKS) == (D(2026, 11, 30), D(2027, 1, 3))  # weeks 49..53


def test_week_53_exists_only_where_the_iso_year_has_it() -> None:
    assert period_dates(2026, 53, PeriodType.WEEK) == (D(2026, 12, 28), D(2027, 1, 3))
    with pytest.raises(ValueError, match="payroll period 53 of 2025 does not exist for a 1-week payroll"):
        period_dates(2025, 53, PeriodType.WEEK)
    with pytest.raises(ValueError, match=r"1\.\.13"):
        period_dates(2026, 14, PeriodType.FOUR_WEEKS)
    with pytest.raises(ValueError, match=r"1\.\.12"):
        period_dates(2026, 13, PeriodType.MONTH)


def test_labels_say_month_or_period() -> None:
    assert payroll_period_label(2026, 3, PeriodType.MONTH) == "2026-03"
    assert payroll_period_label(2026, 13, PeriodType.FOUR_WEEKS) == "2026/13"
    assert payroll_period_label(2026, 1, PeriodType.WEEK) == "2026/01"


@given(st.dates(min_value=D(1990, 1, 1), max_value=D(2100, 12, 31)), st.sampled_from(list(PeriodType)))
def test_every_day_lies_in_the_period_that_period_of_names(day: dt.date, period_type: PeriodType) -> None:
    year, number = period_of(day, period_type)
    start, end = period_dates(year, number, period_type)
    assert start <= day <= end


@given(st.integers(min_value=1990, max_value=2100), st.sampled_from(list(PeriodType)))
def test_a_years_periods_tile_it_and_meet_the_next_year(year: int, period_type: PeriodType) -> None:
    count = periods_in_year(year, period_type)
    spans = [period_dates(year, number, period_type) for number in range(1, count + 1)]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start == end + dt.timedelta(days=1)
    assert period_dates(year + 1, 1, period_type)[0] == spans[-1][1] + dt.timedelta(days=1)
    if period_type is not PeriodType.MONTH:
        assert all(start.weekday() == 0 and end.weekday() == 6 for start, end in spans)  # Monday to Sunday
        lengths = {(end - start).days + 1 for start, end in spans}
        expected = {7} if period_type is PeriodType.WEEK else ({28, 35} if iso_weeks(year) == 53 else {28})
        assert lengths == expected


def test_by_number_the_period_id_is_the_year_and_the_number() -> None:
    assert financial_period(2026, 3, PeriodType.MONTH, PeriodMapping.NUMBER, {}) == "202603"
    ledger = thirteen_period_ledger(2026)
    assert financial_period(2026, 13, PeriodType.FOUR_WEEKS, PeriodMapping.NUMBER, ledger) == "202613"
    assert financial_period(2026, 53, PeriodType.WEEK, PeriodMapping.NUMBER, {}) == "202653"


def test_by_end_date_a_four_week_period_goes_to_the_month_of_its_last_day() -> None:
    ledger = monthly_ledger(2025, 2026, 2027)
    by_end = [financial_period(2026, n, PeriodType.FOUR_WEEKS, PeriodMapping.END_DATE, ledger) for n in range(1, 14)]
    assert by_end[0] == "202601"  # 2025-12-29..2026-01-25: it ends in January
    assert by_end[12] == "202701"  # weeks 49..53 end on 3 January 2027
    assert by_end == sorted(by_end)


def test_by_end_date_week_53_goes_to_the_next_years_january_or_nowhere() -> None:
    assert financial_period(2026, 53, PeriodType.WEEK, PeriodMapping.END_DATE, monthly_ledger(2026, 2027)) == "202701"
    assert financial_period(2026, 53, PeriodType.WEEK, PeriodMapping.END_DATE, monthly_ledger(2026)) is None


def test_by_end_date_a_fiscal_year_from_july_numbers_its_own_periods() -> None:
    ledger = fiscal_ledger_from_july(2027)  # 202701 = July 2026 .. 202712 = June 2027
    assert financial_period(2026, 7, PeriodType.MONTH, PeriodMapping.END_DATE, ledger) == "202701"
    assert financial_period(2027, 6, PeriodType.MONTH, PeriodMapping.END_DATE, ledger) == "202712"
    assert financial_period(2026, 30, PeriodType.WEEK, PeriodMapping.END_DATE, ledger) == "202701"  # ends 26 July
    assert financial_period(2026, 6, PeriodType.MONTH, PeriodMapping.END_DATE, ledger) is None  # before the year
