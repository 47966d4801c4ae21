"""The correction split: a run's lines grouped by the payroll period they belong to.

A March run may correct January and February. Each period's lines become their own journal transaction,
booked *in that period* (the header's `period`, not its `date`): the run's own period on the header date,
a correction on its period's last day. With `ClosedPeriodPolicy.NEXT_OPEN` a period closed in the general
ledger is booked in the first open period after it instead, and the journal says which period moved; it stays
its own transaction (its identity is the period its lines belong to: journals/keys.py).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from nmbrs_visma.journals.frame import validate_lines
from nmbrs_visma.journals.models import ClosedPeriodPolicy, FinancialPeriod, PayrollRun

Periods = Mapping[str, FinancialPeriod]


@dataclass(frozen=True)
class PeriodJournal:
    """The lines of one run's payroll period, booked in one financial period."""

    period_id: str  # the financial period booked in, YYYYPP
    transaction_date: dt.date
    is_correction: bool
    lines: pd.DataFrame = field(repr=False)
    moved_from: tuple[str, ...] = ()  # closed periods whose lines were moved into this one (NEXT_OPEN)
    reference: str = ""  # the run's reference (`PayrollRun.reference`), identical in every period's journal
    payroll_period: str = ""  # YYYYPP the lines belong to (the period booked in, unless it moved)

    @property
    def note(self) -> str:
        return moved_note(self.moved_from, self.period_id)


def own_periods(run: PayrollRun) -> frozenset[str]:
    """The run's own periods (not corrections): `period_start`..`period_end` of the run's year."""
    return frozenset(f"{run.year:04d}{p:02d}" for p in range(run.period_start, run.period_end + 1))


def period_bounds(period_id: str, periods: Periods | None = None) -> tuple[dt.date, dt.date] | None:
    """First and last day of a period: Visma.net's when known, else the calendar month (periods 01-12)."""
    if periods is not None and period_id in periods:
        known = periods[period_id]
        return known.start_date, known.end_date
    year, number = int(period_id[:4]), int(period_id[4:])
    if 1 <= number <= 12:
        return dt.date(year, number, 1), dt.date(year, number, calendar.monthrange(year, number)[1])
    return None


def next_open_period(period_id: str, periods: Periods) -> str | None:
    """The first period after `period_id` that is active and open in the general ledger."""
    later = sorted(p for p in periods if p > period_id)
    return next((p for p in later if periods[p].active and not periods[p].closed_in_gl), None)


def target_period(period_id: str, periods: Periods | None, policy: ClosedPeriodPolicy) -> str:
    """Where a period's lines are booked: itself, or (NEXT_OPEN, closed) the next open period if there is one.

    An unknown, inactive or unmovable period stays itself; the checks refuse it with the reason.
    """
    if periods is None or policy is not ClosedPeriodPolicy.NEXT_OPEN:
        return period_id
    known = periods.get(period_id)
    if known is None or not known.closed_in_gl:
        return period_id
    return next_open_period(period_id, periods) or period_id


def booking_date(period_id: str, run: PayrollRun, header_date: dt.date | None, periods: Periods | None) -> dt.date:
    """`transactionDate`: the header date in the run's own period (kept inside it), else the period's last day."""
    bounds = period_bounds(period_id, periods)
    inside = header_date is not None and (bounds is None or bounds[0] <= header_date <= bounds[1])
    if inside and period_id in own_periods(run):
        return header_date
    if bounds is not None:
        return bounds[1]
    if header_date is None:
        raise ValueError(f"company {run.company_number} run {run.run_number}: no date for period {period_id}")
    return header_date


def moved_note(moved_from: tuple[str, ...], period_id: str) -> str:
    if not moved_from:
        return ""
    return f"lines of closed period(s) {', '.join(moved_from)} booked in {period_id}, the first open period"


def split_by_period(
    lines: pd.DataFrame,
    run: PayrollRun,
    *,
    periods: Periods | None = None,
    policy: ClosedPeriodPolicy = ClosedPeriodPolicy.REFUSE,
) -> list[PeriodJournal]:
    """One `PeriodJournal` per payroll period of the lines, ordered by that period; every line in exactly one."""
    validate_lines(lines)
    if lines.empty:
        return []
    journals = []
    own = own_periods(run)
    for source in sorted(lines["period_id"].unique()):
        target = target_period(source, periods, policy)
        part = lines[lines["period_id"] == source]
        header_date = part["date"].max().date()
        journals.append(
            PeriodJournal(
                period_id=target,
                transaction_date=booking_date(target, run, header_date, periods),
                is_correction=source not in own,
                lines=part,
                moved_from=(source,) if source != target else (),
                reference=run.reference,
                payroll_period=source,
            )
        )
    return journals
