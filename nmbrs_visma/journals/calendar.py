"""Payroll periods as Nmbrs counts them, and the Visma.net financial period each one is booked in.

Nmbrs companies pay per month (12 periods a year), per four weeks (13) or per week (52, or 53 when the ISO
year has a week 53, as 2026 does). Weeks are ISO weeks (Monday to Sunday; week 1 holds the year's first
Thursday, so it can start in December of the year before):
- `1-week` period N is ISO week N;
- `4-weeks` period N covers ISO weeks 4N-3..4N; in a year with a week 53, period 13 covers weeks 49..53, so that
  every day of the payroll year lies in exactly one period.

A mapping says how a payroll period becomes a financial period (`PeriodMapping`):
- `number`: payroll period N of year Y is Visma.net period `YYYYNN` (a ledger of 12, 13 or 52/53 periods; for
  monthly payrolls this is the calendar month, today's behaviour);
- `end_date`: the financial period whose own start and end dates hold the payroll period's last day (a monthly
  ledger with a 4-weekly or weekly payroll).

Pure functions, no I/O: the checks and the build call them with Visma.net's periods (`FinancialPeriod`).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping

from nmbrs_visma.journals.models import FinancialPeriod, PeriodMapping, PeriodType

__all__ = [
    "PeriodMapping",
    "PeriodType",
    "financial_period",
    "iso_weeks",
    "payroll_period_label",
    "period_dates",
    "period_of",
    "periods_in_year",
]


def iso_weeks(year: int) -> int:
    """52 or 53: the ISO weeks of `year` (28 December always lies in its last week)."""
    return dt.date(year, 12, 28).isocalendar().week


def periods_in_year(year: int, period_type: PeriodType) -> int:
    """12 months, 13 four-week periods, or 52/53 weeks."""
    if period_type is PeriodType.MONTH:
        return 12
    if period_type is PeriodType.FOUR_WEEKS:
        return 13
    return iso_weeks(year)


def period_dates(year: int, number: int, period_type: PeriodType) -> tuple[dt.date, dt.date]:
    """First and last day of payroll period `number` of `year`; a number outside the year is a `ValueError`."""
    count = periods_in_year(year, period_type)
    if not 1 <= number <= count:
        raise ValueError(f"payroll period {number} of {year} does not exist for a {period_type} payroll (1..{count})")
    if period_type is PeriodType.MONTH:
        return dt.date(year, number, 1), dt.date(year, number, calendar.monthrange(year, number)[1])
    if period_type is PeriodType.WEEK:
        return dt.date.fromisocalendar(year, number, 1), dt.date.fromisocalendar(year, number, 7)
    last_week = iso_weeks(year) if number == 13 else 4 * number
    return dt.date.fromisocalendar(year, 4 * number - 3, 1), dt.date.fromisocalendar(year, last_week, 7)


def period_of(day: dt.date, period_type: PeriodType) -> tuple[int, int]:
    """(payroll year, period number) holding `day`: the inverse of `period_dates`."""
    if period_type is PeriodType.MONTH:
        return day.year, day.month
    year, week, _ = day.isocalendar()
    if period_type is PeriodType.WEEK:
        return year, week
    return year, min(13, (week + 3) // 4)


def financial_period(
    year: int,
    number: int,
    period_type: PeriodType,
    mapping: PeriodMapping,
    periods: Mapping[str, FinancialPeriod],
) -> str | None:
    """The Visma.net period (YYYYPP) that payroll period `number` of `year` is booked in, or None when the
    mapping finds none among `periods` (`number` names a period id whether Visma.net holds it or not: the
    checks tell a missing period from an inactive or closed one)."""
    if mapping is PeriodMapping.NUMBER:
        return f"{year:04d}{number:02d}"
    last_day = period_dates(year, number, period_type)[1]
    holding = [p for p in periods.values() if p.start_date <= last_day <= p.end_date]
    return min(holding, key=lambda p: p.period_id).period_id if holding else None


def payroll_period_label(year: int, number: int, period_type: PeriodType) -> str:
    """How a person names the period: `2026-03` for a month, `2026/13` for a four-week or week period."""
    return f"{year:04d}-{number:02d}" if period_type is PeriodType.MONTH else f"{year:04d}/{number:02d}"
