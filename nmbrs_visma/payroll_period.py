"""The flows' period parameter: `YYYY-MM`, by default the month before today in Europe/Amsterdam.

Why a time zone: the monthly deployment runs just after midnight Dutch time on the 1st; in UTC that is still
the last day of the month before, and "the previous month" would be one month too early.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple
from zoneinfo import ZoneInfo

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")


class PayrollPeriod(NamedTuple):
    year: int
    month: int

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def period_id(self) -> str:
        """The matching Visma.net financial period id, `YYYYPP`."""
        return f"{self.year:04d}{self.month:02d}"

    def next(self) -> PayrollPeriod:
        return PayrollPeriod(self.year + self.month // 12, self.month % 12 + 1)


def parse_period(text: str) -> PayrollPeriod:
    """`2026-03` -> PayrollPeriod(2026, 3); anything else is a clear error."""
    match = _PATTERN.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"period {text!r} is not a month as YYYY-MM (for example 2026-03)")
    return PayrollPeriod(int(match.group(1)), int(match.group(2)))


def previous_period(now: dt.datetime | None = None) -> PayrollPeriod:
    """The month before `now` (default: the current time) in Europe/Amsterdam."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(AMSTERDAM)
    return PayrollPeriod(local.year - 1, 12) if local.month == 1 else PayrollPeriod(local.year, local.month - 1)


def resolve_period(text: str | None, now: dt.datetime | None = None) -> PayrollPeriod:
    return parse_period(text) if text else previous_period(now)


def period_range(start: str, end: str) -> list[PayrollPeriod]:
    """Every month from `start` to `end`, inclusive; a reversed or over-long range is an error."""
    first, last = parse_period(start), parse_period(end)
    if last < first:
        raise ValueError(f"backfill range {start}..{end} ends before it starts")
    periods = [first]
    while periods[-1] < last:
        periods.append(periods[-1].next())
    if len(periods) > 36:
        raise ValueError(f"backfill range {start}..{end} spans {len(periods)} months; at most 36 at once")
    return periods
