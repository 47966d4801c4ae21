"""The journal lines the Nmbrs emulator generates, and the XML documents it renders them into.

Everything is a pure function of the demo world (company, year, period): no clock, no randomness, so the
tests can ask `expected_lines` what a run must contain and compare it, to the cent, with what was parsed.
Every period balances by construction: net wages payable is the remainder of the other lines.
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


def _gross(company: DemoCompany, employee: int, period: int) -> int:
    return 250_000 + (company.number % 97) * 1_013 + employee * 37_411 + period * 1_250


def _correction_gross(employee: int, corrected: int) -> int:
    """A correction raises odd periods and lowers even ones, so the demo carries negative values."""
    sign = 1 if corrected % 2 else -1
    return sign * (4_217 + employee * 1_033 + corrected * 101)


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


def period_end(year: int, period: int) -> dt.date:
    return dt.date(year, period, calendar.monthrange(year, period)[1])


def run_transactions(
    company: DemoCompany, year: int, period: int, corrections: tuple[int, ...] = (), kind: JournalKind = "journals"
) -> tuple[LedgerTransaction, ...]:
    """The transactions of the run for `period`, one per period, oldest first (corrections precede the run)."""
    if kind not in JOURNAL_KINDS:
        raise ValueError(f"unknown journal kind {kind!r}; expected one of {', '.join(JOURNAL_KINDS)}")
    run_date = period_end(year, period)
    transactions = []
    for corrected in sorted(corrections):
        suffix = f" correctie {corrected:02d}/{year}"
        lines = [
            line
            for employee in range(company.employees)
            for line in _employee_lines(company, employee, _correction_gross(employee, corrected), 0, suffix)
        ]
        transactions.append(LedgerTransaction(year, corrected, run_date, _aggregate(lines, kind)))
    lines = [
        line
        for employee in range(company.employees)
        for line in _employee_lines(company, employee, _gross(company, employee, period), 3_490 + employee * 1_117, "")
    ]
    transactions.append(LedgerTransaction(year, period, run_date, _aggregate(lines, kind)))
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
