"""The correction split: a run's lines grouped by the payroll period they belong to.

A March run may correct January and February. Each payroll period's lines become their own journal
transaction, booked in the financial period the mapping gives it (journals/calendar.py: by number, or the
period holding its last day), on a date inside that financial period: the run's own period on the header
date, a correction on its payroll period's last day. With `ClosedPeriodPolicy.NEXT_OPEN` a period closed in the general
ledger is booked in the first open period after it instead, and the journal says which period moved; it stays
its own transaction (its identity is the period its lines belong to: journals/keys.py).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from nmbrs_visma.journals.calendar import financial_period, payroll_period_label, period_dates
from nmbrs_visma.journals.frame import validate_lines
from nmbrs_visma.journals.models import ClosedPeriodPolicy, FinancialPeriod, PayrollRun, PeriodMapping, PeriodType

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


def payroll_bounds(payroll_period: str, period_type: PeriodType) -> tuple[dt.date, dt.date]:
    """First and last day of a payroll period `YYYYPP` of a payroll of `period_type` (`ValueError` if none)."""
    return period_dates(int(payroll_period[:4]), int(payroll_period[4:]), period_type)


def payroll_label(payroll_period: str, period_type: PeriodType) -> str:
    """`2026-03` for a month, `2026/13` for a four-week or week period."""
    return payroll_period_label(int(payroll_period[:4]), int(payroll_period[4:]), period_type)


def mapped_period(
    payroll_period: str, run: PayrollRun, mapping: PeriodMapping | None, periods: Periods | None
) -> str | None:
    """The financial period the mapping gives a payroll period (before any closed-period move), or None."""
    if mapping is None:
        return None
    if mapping is PeriodMapping.END_DATE and periods is None:
        raise ValueError("an end_date period mapping needs Visma.net's financial periods")
    try:
        return financial_period(
            int(payroll_period[:4]), int(payroll_period[4:]), run.period_type, mapping, periods or {}
        )
    except ValueError:  # not a period of this payroll: the checks say so
        return None


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


def booking_date(
    period_id: str,
    run: PayrollRun,
    header_date: dt.date | None,
    periods: Periods | None,
    *,
    payroll_period: str | None = None,
    moved: bool = False,
) -> dt.date:
    """`transactionDate`, always inside the financial period booked in (`period_id`): the header date when it
    lies inside and the lines are the run's own (or were moved past a closed period); else the payroll period's
    last day, brought inside the financial period's dates (a 4-weekly period 13 ending on 3 January is booked on
    31 December), or for moved lines the last day of the period they moved to."""
    source = payroll_period or period_id
    bounds = period_bounds(period_id, periods)
    inside = header_date is not None and (bounds is None or bounds[0] <= header_date <= bounds[1])
    if inside and (moved or source in own_periods(run)):
        assert header_date is not None
        return header_date
    if bounds is not None:
        if moved:
            return bounds[1]
        try:
            last_day = payroll_bounds(source, run.period_type)[1]
        except ValueError:
            return bounds[1]
        return min(max(last_day, bounds[0]), bounds[1])
    if header_date is None:
        raise ValueError(f"company {run.company_number} run {run.run_number}: no date for period {period_id}")
    return header_date


@dataclass(frozen=True)
class Booking:
    """Where one payroll period's lines are booked, and on which date."""

    payroll_period: str  # YYYYPP the lines belong to
    period_id: str  # the financial period booked in
    transaction_date: dt.date
    moved_from: tuple[str, ...] = ()  # the closed financial period the lines were moved from (NEXT_OPEN)


def book(
    payroll_period: str,
    run: PayrollRun,
    header_date: dt.date | None,
    periods: Periods | None,
    *,
    mapping: PeriodMapping | None = PeriodMapping.NUMBER,
    policy: ClosedPeriodPolicy = ClosedPeriodPolicy.REFUSE,
) -> Booking:
    """The financial period (through `mapping`, then the closed-period `policy`) and date of a payroll period;
    a payroll period that maps to no financial period is a `ValueError` (the checks refuse it first)."""
    mapped = mapped_period(payroll_period, run, mapping, periods)
    if mapped is None:
        raise ValueError(
            f"company {run.company_number} run {run.run_number}: payroll period "
            f"{payroll_label(payroll_period, run.period_type)} maps to no financial period"
        )
    target = target_period(mapped, periods, policy)
    moved = (mapped,) if target != mapped else ()
    date = booking_date(target, run, header_date, periods, payroll_period=payroll_period, moved=bool(moved))
    return Booking(payroll_period, target, date, moved)


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
    mapping: PeriodMapping | None = PeriodMapping.NUMBER,
) -> list[PeriodJournal]:
    """One `PeriodJournal` per payroll period of the lines, ordered by that period; every line in exactly one."""
    validate_lines(lines)
    if lines.empty:
        return []
    journals = []
    own = own_periods(run)
    for source in sorted(lines["period_id"].unique()):
        part = lines[lines["period_id"] == source]
        booking = book(source, run, part["date"].max().date(), periods, mapping=mapping, policy=policy)
        journals.append(
            PeriodJournal(
                period_id=booking.period_id,
                transaction_date=booking.transaction_date,
                is_correction=source not in own,
                lines=part,
                moved_from=booking.moved_from,
                reference=run.reference,
                payroll_period=source,
            )
        )
    return journals
