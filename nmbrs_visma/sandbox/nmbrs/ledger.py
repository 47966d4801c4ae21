"""The journal lines the Nmbrs emulator generates, and the XML documents it renders them into.

Everything is a pure function of the demo world (company, period type, year, period): no clock, no randomness,
so the tests can ask `expected_lines` what a run must contain and compare it, to the cent, with what was parsed.
Every period balances by construction: net wages payable is the remainder of the other lines.

Payroll periods are counted in the company's own period type: 12 months, 13 four-week periods (period N is
ISO weeks 4N-3..4N; in a year with an ISO week 53 period 13 takes weeks 49..53) or 52/53 ISO weeks. The dates
are computed here on their own (`date.fromisocalendar`), never with the product's journals/calendar.py, so a
mistake in one of them shows up as a disagreement in the tests instead of agreeing with itself.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal
from xml.sax.saxutils import escape

from nmbrs_visma.journals.models import PeriodType
from nmbrs_visma.sandbox.demo_data import ACCOUNTS, DemoCompany

JournalKind = Literal["journals", "journalscostcenter", "journalscostcenterunit"]
JOURNAL_KINDS: tuple[JournalKind, ...] = ("journals", "journalscostcenter", "journalscostcenterunit")
Side = Literal["debit", "credit"]
LineKey = tuple[str, str, str, str, Side]  # (period_id, account, cost_center, cost_unit, side)

GROSS, SOCIAL, PENSION, TRAVEL = "4000", "4100", "4200", "4300"
WAGE_TAX_PAYABLE, SOCIAL_PAYABLE, PENSION_PAYABLE, NET_PAYABLE = "1600", "1610", "1620", "1700"
COST_ACCOUNTS = frozenset({GROSS, SOCIAL, PENSION, TRAVEL})
_DESCRIPTIONS = {number: description for number, description, _active in ACCOUNTS}

# rates in basis points of gross wages
_SOCIAL_BP = 1925
_PENSION_EMPLOYER_BP = 850
_PENSION_EMPLOYEE_BP = 550
_WAGE_TAX_BP = 3697


@dataclass(frozen=True)
class LedgerLine:
    """One journal line as the emulator writes it (amount in cents, may be negative on a correction)."""

    account: str
    cost_center: str
    cost_unit: str
    side: Side
    cents: int
    description: str


@dataclass(frozen=True)
class LedgerTransaction:
    """One `<transaction>`: the lines of one payroll period inside a run's journal document."""

    year: int
    period: int
    date: dt.date
    lines: tuple[LedgerLine, ...]

    @property
    def period_id(self) -> str:
        return f"{self.year}{self.period:02d}"


@dataclass(frozen=True)
class XmlStyle:
    """How one company's journal export spells dates, periods and amounts (all seen in real exports)."""

    date_format: str = "%Y-%m-%d"
    period_format: str = "{year}/{period}"
    decimal_comma: bool = False
    encoding: str = "utf-8"
    declared_encoding: str = ""  # what the XML declaration claims, when it differs from the bytes
    empty_dims: bool = True  # write <dim2/> and <dim3/> when a line has no cost center or unit


ISO_STYLE = XmlStyle()
DUTCH_STYLE = XmlStyle(date_format="%Y%m%d", period_format="{period}/{year}", decimal_comma=True, encoding="utf-16")
MISLABELLED_STYLE = XmlStyle(
    date_format="%Y%m%d", period_format="{period}/{year}", declared_encoding="UTF-16", empty_dims=False
)


def _pct(cents: int, basis_points: int) -> int:
    """`cents * basis_points / 10000`, rounded half away from zero to whole cents (symmetric for negatives)."""
    exact = Decimal(cents) * basis_points / Decimal(10000)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _employee_dims(company: DemoCompany, employee: int) -> tuple[str, str]:
    centers, units = company.cost_centers, company.cost_units
    center = centers[employee % len(centers)] if centers else ""
    unit = units[(employee // max(len(centers), 1)) % len(units)] if units else ""
    return center, unit


def _per_period(monthly_cents: int, period_type: PeriodType) -> int:
    """A monthly amount as paid per period of `period_type` (12/13 of it per four weeks, 12/52 per week)."""
    if period_type is PeriodType.MONTH:
        return monthly_cents
    periods_a_year = 13 if period_type is PeriodType.FOUR_WEEKS else 52
    return monthly_cents * 12 // periods_a_year if monthly_cents >= 0 else -(-monthly_cents * 12 // periods_a_year)


def _gross(company: DemoCompany, employee: int, period: int, period_type: PeriodType = PeriodType.MONTH) -> int:
    monthly = 250_000 + (company.number % 97) * 1_013 + employee * 37_411 + period * 1_250
    return _per_period(monthly, period_type)


def _travel(employee: int, period_type: PeriodType = PeriodType.MONTH) -> int:
    return _per_period(3_490 + employee * 1_117, period_type)


def _correction_gross(employee: int, corrected: int, period_type: PeriodType = PeriodType.MONTH) -> int:
    """A correction raises odd periods and lowers even ones, so the demo carries negative values."""
    sign = 1 if corrected % 2 else -1
    return _per_period(sign * (4_217 + employee * 1_033 + corrected * 101), period_type)


def _employee_lines(company: DemoCompany, employee: int, gross: int, travel: int, suffix: str) -> list[LedgerLine]:
    center, unit = _employee_dims(company, employee)
    social = _pct(gross, _SOCIAL_BP)
    pension_employer = _pct(gross, _PENSION_EMPLOYER_BP)
    pension_employee = _pct(gross, _PENSION_EMPLOYEE_BP)
    wage_tax = _pct(gross - pension_employee, _WAGE_TAX_BP)
    net = gross + travel - wage_tax - pension_employee
    amounts: list[tuple[str, Side, int]] = [
        (GROSS, "debit", gross),
        (SOCIAL, "debit", social),
        (PENSION, "debit", pension_employer),
        (TRAVEL, "debit", travel),
        (WAGE_TAX_PAYABLE, "credit", wage_tax),
        (SOCIAL_PAYABLE, "credit", social),
        (PENSION_PAYABLE, "credit", pension_employer + pension_employee),
        (NET_PAYABLE, "credit", net),
    ]
    lines = []
    for account, side, cents in amounts:
        if cents == 0:
            continue
        cost = account in COST_ACCOUNTS
        lines.append(
            LedgerLine(
                account=account,
                cost_center=center if cost else "",
                cost_unit=unit if cost else "",
                side=side,
                cents=cents,
                description=_DESCRIPTIONS.get(account, account) + suffix,
            )
        )
    return lines


def _aggregate(lines: Iterable[LedgerLine], kind: JournalKind) -> tuple[LedgerLine, ...]:
    """Sum per (account, dims, side) at the detail the journal kind exports; keeps first-seen order."""
    totals: dict[tuple[str, str, str, Side], int] = {}
    descriptions: dict[tuple[str, str, str, Side], str] = {}
    for line in lines:
        center = line.cost_center if kind != "journals" else ""
        unit = line.cost_unit if kind == "journalscostcenterunit" else ""
        key = (line.account, center, unit, line.side)
        totals[key] = totals.get(key, 0) + line.cents
        descriptions.setdefault(key, line.description)
    ordered = sorted(totals, key=lambda key: (key[3] != "debit", key[0], key[1], key[2]))
    return tuple(LedgerLine(*key[:3], key[3], totals[key], descriptions[key]) for key in ordered)


def iso_weeks_in(year: int) -> int:
    """52 or 53: whether ISO week 53 of `year` exists (asked of `fromisocalendar` itself)."""
    try:
        dt.date.fromisocalendar(year, 53, 1)
    except ValueError:
        return 52
    return 53


def periods_in(year: int, period_type: PeriodType) -> int:
    """How many payroll periods `year` has for `period_type`: 12, 13, or 52/53."""
    if period_type is PeriodType.MONTH:
        return 12
    if period_type is PeriodType.FOUR_WEEKS:
        return 13
    return iso_weeks_in(year)


def check_period(year: int, period: int, period_type: PeriodType) -> None:
    """`ValueError` unless payroll period `period` exists in `year` for `period_type`."""
    count = periods_in(year, period_type)
    if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= count:
        raise ValueError(
            f"period {period!r} does not exist in {year} for a {period_type.value} company (periods 1..{count})"
        )


def check_run_periods(year: int, first: int, last: int, corrections: Iterable[int], period_type: PeriodType) -> None:
    """`ValueError` unless a run of `year` can cover `first`..`last` and correct `corrections`: all of them
    periods of the year in the company's numbering, `first` <= `last`, every correction before `first`."""
    check_period(year, last, period_type)
    check_period(year, first, period_type)
    if first > last:
        raise ValueError(f"a run cannot start in period {first} after its last period {last}")
    late = sorted(corrected for corrected in corrections if not 1 <= corrected < first)
    if late:
        raise ValueError(f"corrections {late} are not periods of {year} before the run's first period {first}")


def period_span(year: int, period: int, period_type: PeriodType = PeriodType.MONTH) -> tuple[dt.date, dt.date]:
    """First and last day of payroll period `period` of `year` (`ValueError` when the year has no such period).

    A four-week period 13 runs up to the Sunday before ISO week 1 of the next year, so in a 53-week year it
    holds weeks 49..53."""
    check_period(year, period, period_type)
    if period_type is PeriodType.MONTH:
        return dt.date(year, period, 1), dt.date(year, period, calendar.monthrange(year, period)[1])
    if period_type is PeriodType.WEEK:
        first = dt.date.fromisocalendar(year, period, 1)
        return first, first + dt.timedelta(days=6)
    first = dt.date.fromisocalendar(year, 4 * period - 3, 1)
    if period == 13:
        return first, dt.date.fromisocalendar(year + 1, 1, 1) - dt.timedelta(days=1)
    return first, first + dt.timedelta(days=27)


def period_end(year: int, period: int, period_type: PeriodType = PeriodType.MONTH) -> dt.date:
    """The last day of payroll period `period` of `year` in the company's own numbering."""
    return period_span(year, period, period_type)[1]


def _transaction(year: int, period: int, day: dt.date, kind: JournalKind, lines: list[LedgerLine]) -> LedgerTransaction:
    return LedgerTransaction(year, period, day, _aggregate(lines, kind))


def run_transactions(
    company: DemoCompany,
    year: int,
    period: int,
    corrections: tuple[int, ...] = (),
    kind: JournalKind = "journals",
    *,
    period_type: PeriodType = PeriodType.MONTH,
    first_period: int | None = None,
) -> tuple[LedgerTransaction, ...]:
    """The transactions of the run for `first_period`..`period` (one period unless the run spans several), one
    per payroll period, oldest first: corrections of earlier periods of `year` precede the run's own periods.

    Periods are in the company's own numbering (`period_type`). The run's last period is dated on its last day,
    and so is each earlier period of a run spanning several. A correction is dated on its own period's last
    day for a four-weekly or weekly company; a monthly correction keeps the run's date, as every monthly
    document always has (the demo and the tests compare those documents byte for byte)."""
    if kind not in JOURNAL_KINDS:
        raise ValueError(f"unknown journal kind {kind!r}; expected one of {', '.join(JOURNAL_KINDS)}")
    start = period if first_period is None else first_period
    check_run_periods(year, start, period, corrections, period_type)
    run_date = period_end(year, period, period_type)
    monthly = period_type is PeriodType.MONTH
    employees = range(company.employees)
    transactions = []
    for corrected in sorted(corrections):
        date = run_date if monthly else period_end(year, corrected, period_type)
        suffix = f" correctie {corrected:02d}/{year}"
        lines = [
            line
            for employee in employees
            for line in _employee_lines(
                company, employee, _correction_gross(employee, corrected, period_type), 0, suffix
            )
        ]
        transactions.append(_transaction(year, corrected, date, kind, lines))
    for own in range(start, period + 1):
        lines = [
            line
            for employee in employees
            for line in _employee_lines(
                company, employee, _gross(company, employee, own, period_type), _travel(employee, period_type), ""
            )
        ]
        transactions.append(_transaction(year, own, period_end(year, own, period_type), kind, lines))
    return tuple(transactions)


def totals(transactions: Iterable[LedgerTransaction]) -> dict[LineKey, int]:
    """Cents per (period_id, account, cost_center, cost_unit, side), as a parsed frame must sum to."""
    result: dict[LineKey, int] = defaultdict(int)
    for transaction in transactions:
        for line in transaction.lines:
            result[(transaction.period_id, line.account, line.cost_center, line.cost_unit, line.side)] += line.cents
    return dict(result)


def _amount(cents: int, style: XmlStyle) -> str:
    text = str(Decimal(cents).scaleb(-2))
    return text.replace(".", ",") if style.decimal_comma else text


def render_xml(transactions: Iterable[LedgerTransaction], style: XmlStyle = ISO_STYLE) -> bytes:
    """The Nmbrs journal XML document (`transactions/transaction/header+lines/line`) in the given style."""
    declared = style.declared_encoding or style.encoding
    parts = [f'<?xml version="1.0" encoding="{declared}"?>', "<transactions>"]
    for transaction in transactions:
        period = style.period_format.format(period=transaction.period, year=transaction.year)
        parts.append("  <transaction>")
        parts.append(f"    <header><date>{transaction.date.strftime(style.date_format)}</date>")
        parts.append(f"      <period>{escape(period)}</period></header>")
        parts.append("    <lines>")
        for line in transaction.lines:
            dims = f"<dim1>{escape(line.account)}</dim1>"
            for tag, value in (("dim2", line.cost_center), ("dim3", line.cost_unit)):
                if value:
                    dims += f"<{tag}>{escape(value)}</{tag}>"
                elif style.empty_dims:
                    dims += f"<{tag}/>"
            parts.append(
                f"      <line>{dims}<value>{_amount(line.cents, style)}</value>"
                f"<debitcredit>{line.side}</debitcredit><description>{escape(line.description)}</description></line>"
            )
        parts.append("    </lines>")
        parts.append("  </transaction>")
    parts.append("</transactions>")
    return ("\n".join(parts) + "\n").encode(style.encoding)


def balance(transactions: Iterable[LedgerTransaction]) -> Mapping[str, int]:
    """Debits minus credits per period_id (all zero in a generated document)."""
    result: dict[str, int] = defaultdict(int)
    for transaction in transactions:
        for line in transaction.lines:
            result[transaction.period_id] += line.cents if line.side == "debit" else -line.cents
    return dict(result)
