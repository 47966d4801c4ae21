"""The flows' period parameter: which payroll runs a pass posts.

A period is given the way a payroll admin names it: `YYYY-MM`, a calendar month (a monthly company's period;
a 4-weekly or weekly company's periods that end in that month), or `YYYY/NN`, payroll period NN of year YYYY
in the company's own numbering (`2026/13`: the thirteenth four weeks, or week 13). `previous-month` is the month
before today in Europe/Amsterdam: the monthly deployment runs just after midnight Dutch time, when in UTC it is
still the last day of the month before. A range (`start`..`end`, both of one form) is a backfill.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from nmbrs_visma.journals.calendar import period_dates
from nmbrs_visma.journals.models import PayrollRun

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
PREVIOUS_MONTH = "previous-month"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_PAYROLL = re.compile(r"^(\d{4})/(\d{1,2})$")
MAX_BACKFILL_MONTHS = 36
# what `period_filter` reads, for the flows' parameter forms (a malformed period is refused before any run)
PERIOD_PATTERN = r"^(\d{4}-(0[1-9]|1[0-2])|\d{4}/(0?[1-9]|[1-4]\d|5[0-3])|previous-month)$"


class PayrollPeriod(NamedTuple):
    """A calendar month."""

    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def period_id(self) -> str:
        """The matching Visma.net financial period id of a calendar-year monthly ledger, `YYYYPP`."""
        return f"{self.year:04d}{self.month:02d}"

    def next(self) -> PayrollPeriod:
        return PayrollPeriod(self.year + self.month // 12, self.month % 12 + 1)


def parse_period(text: str) -> PayrollPeriod:
    """`2026-03` -> PayrollPeriod(2026, 3); anything else is a clear error."""
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"period {text!r} is not a month as YYYY-MM (for example 2026-03)")
    return PayrollPeriod(int(match.group(1)), int(match.group(2)))


def previous_period(now: dt.datetime | None = None) -> PayrollPeriod:
    """The month before `now` (default: the current time) in Europe/Amsterdam."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(AMSTERDAM)
    return PayrollPeriod(local.year - 1, 12) if local.month == 1 else PayrollPeriod(local.year, local.month - 1)


def today(now: dt.datetime | None = None) -> dt.date:
    """Today in Europe/Amsterdam."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(AMSTERDAM).date()


@dataclass(frozen=True)
class PeriodFilter:
    """The runs of `first`..`last` (year, number): calendar months (`monthly`) or payroll period numbers."""

    first: tuple[int, int]
    last: tuple[int, int]
    monthly: bool

    def __str__(self) -> str:
        spell = _month_label if self.monthly else _payroll_label
        return spell(self.first) if self.first == self.last else f"{spell(self.first)}..{spell(self.last)}"

    def matches(self, run: PayrollRun) -> bool:
        """Whether the run's (last) payroll period is in the range: by its number, or by the month it ends in."""
        if not self.monthly:
            return self.first <= (run.year, run.period_end) <= self.last
        try:
            end = period_dates(run.year, run.period_end, run.period_type)[1]
        except ValueError:
            return False
        return self.first <= (end.year, end.month) <= self.last

    def years(self) -> list[int]:
        """The payroll years whose runs can match (a 4-weekly period 13 ends in January of the next year)."""
        first = self.first[0] - 1 if self.monthly and self.first[1] == 1 else self.first[0]
        return list(range(first, self.last[0] + 1))


def _month_label(value: tuple[int, int]) -> str:
    return f"{value[0]:04d}-{value[1]:02d}"


def _payroll_label(value: tuple[int, int]) -> str:
    return f"{value[0]:04d}/{value[1]:02d}"


def _parse_one(text: str, now: dt.datetime | None) -> tuple[tuple[int, int], bool]:
    text = text.strip()
    if text == PREVIOUS_MONTH:
        month = previous_period(now)
        return (month.year, month.month), True
    if _MONTH.match(text):
        month = parse_period(text)
        return (month.year, month.month), True
    match = _PAYROLL.match(text)
    if match and 1 <= int(match.group(2)) <= 53:
        return (int(match.group(1)), int(match.group(2))), False
    raise ValueError(
        f"period {text!r} is neither a month YYYY-MM (2026-03), a payroll period YYYY/NN (2026/13) nor {PREVIOUS_MONTH}"
    )


def period_filter(text: str, now: dt.datetime | None = None) -> PeriodFilter:
    """`2026-03`, `2026/13` or `previous-month` as the filter of one period."""
    value, monthly = _parse_one(text, now)
    return PeriodFilter(value, value, monthly)


def range_filter(start: str, end: str) -> PeriodFilter:
    """`start`..`end` inclusive, both months or both payroll periods; reversed or over-long ranges are errors."""
    first, first_monthly = _parse_one(start, None)
    last, last_monthly = _parse_one(end, None)
    if first_monthly != last_monthly:
        raise ValueError(f"backfill range {start}..{end} mixes a month and a payroll period: give both alike")
    if last < first:
        raise ValueError(f"backfill range {start}..{end} ends before it starts")
    span = last[0] - first[0] + 1
    if first_monthly and (months := (last[0] - first[0]) * 12 + last[1] - first[1] + 1) > MAX_BACKFILL_MONTHS:
        raise ValueError(f"backfill range {start}..{end} spans {months} months; at most {MAX_BACKFILL_MONTHS} at once")
    if not first_monthly and span > MAX_BACKFILL_MONTHS // 12:
        raise ValueError(f"backfill range {start}..{end} spans {span} years; at most {MAX_BACKFILL_MONTHS // 12}")
    return PeriodFilter(first, last, first_monthly)
