"""Four-week and weekly payrolls through the checks and the build: which financial period, which date.

The ledgers are built here with their own dates (a monthly calendar year, a 13-period year of 28-day periods,
a monthly fiscal year starting in July), so the tests see what Visma.net's own period dates decide.
"""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
from pydantic import ValidationError

from nmbrs_visma.journals.build import build_transactions, plan_run
from nmbrs_visma.journals.models import (
    AdministrationReference,
    FinancialPeriod,
    PeriodMapping,
    PeriodType,
)
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml
from tests.journals.builders import demo_reference, journal_xml, line_xml, make_mapping, make_run


def monthly(years: tuple[int, ...] = (2025, 2026, 2027), *, start_month: int = 1) -> dict[str, FinancialPeriod]:
    """Twelve periods a fiscal year; the year named by the calendar year it starts in."""
    periods = {}
    for year in years:
        for number in range(1, 13):
            month0 = start_month - 1 + number - 1
            y, m = year + month0 // 12, month0 % 12 + 1
            periods[f"{year}{number:02d}"] = FinancialPeriod(
                period_id=f"{year}{number:02d}",
                start_date=dt.date(y, m, 1),
                end_date=dt.date(y, m, calendar.monthrange(y, m)[1]),
            )
    return periods


def thirteen(years: tuple[int, ...] = (2025, 2026, 2027)) -> dict[str, FinancialPeriod]:
    """Thirteen periods of 28 days from 1 January; the 13th runs to 31 December."""
    periods = {}
    for year in years:
        first = dt.date(year, 1, 1)
        for number in range(1, 14):
            start = first + dt.timedelta(days=28 * (number - 1))
            end = dt.date(year, 12, 31) if number == 13 else start + dt.timedelta(days=27)
            periods[f"{year}{number:02d}"] = FinancialPeriod(
                period_id=f"{year}{number:02d}", start_date=start, end_date=end
            )
    return periods


def reference(periods: dict[str, FinancialPeriod]) -> AdministrationReference:
    return demo_reference().model_copy(update={"periods": periods})


def balanced(date: str, period: str, amount: str = "10,00") -> tuple[str, str, list[str]]:
    return date, period, [line_xml("4000", amount), line_xml("1700", amount, "credit")]


FOUR_WEEKLY = make_mapping(dimensions=False, period_type=PeriodType.FOUR_WEEKS, period_mapping=PeriodMapping.END_DATE)


def test_a_four_week_run_with_a_correction_into_a_monthly_ledger_by_end_date(check_payload) -> None:
    # period 3 of 2026: ISO weeks 9-12, 23 February .. 22 March; it corrects period 1 (29 Dec 2025 .. 25 Jan 2026)
    run = make_run(period=3, period_type=PeriodType.FOUR_WEEKS)
    lines = parse_journal_xml(journal_xml([balanced("2026-03-20", "2026/3"), balanced("2026-03-20", "2026/1", "2,00")]))
    first, third = build_transactions(lines, run, FOUR_WEEKLY, reference(monthly()))
    assert (first.payroll_period, first.financial_period, first.transaction_date) == (
        "202601",
        "202601",
        dt.date(2026, 1, 25),
    )
    assert (third.payroll_period, third.financial_period, third.transaction_date) == (
        "202603",
        "202603",
        dt.date(2026, 3, 20),
    )
    assert first.is_correction and not third.is_correction
    assert "correction 2026/01" in check_payload(first.payload).description.value


def test_four_week_period_1_that_starts_in_december_is_booked_in_january() -> None:
    run = make_run(period=1, period_type=PeriodType.FOUR_WEEKS)
    lines = parse_journal_xml(journal_xml([balanced("2025-12-31", "2026/1")]))
    (only,) = build_transactions(lines, run, FOUR_WEEKLY, reference(monthly()))
    # the header date lies in December 2025, outside January: the period's last day (25 January) is used
    assert (only.financial_period, only.transaction_date) == ("202601", dt.date(2026, 1, 25))


def test_a_four_week_run_into_a_13_period_ledger_by_number() -> None:
    mapping = FOUR_WEEKLY.model_copy(update={"period_mapping": PeriodMapping.NUMBER})
    run = make_run(period=13, period_type=PeriodType.FOUR_WEEKS)
    # 2026 has 53 ISO weeks: period 13 runs 30 November 2026 .. 3 January 2027; ledger period 13 ends 31 December
    lines = parse_journal_xml(
        journal_xml([balanced("2027-01-03", "2026/13"), balanced("2027-01-03", "2026/12", "1,00")])
    )
    twelfth, thirteenth = build_transactions(lines, run, mapping, reference(thirteen()))
    assert (thirteenth.financial_period, thirteenth.transaction_date) == ("202613", dt.date(2026, 12, 31))
    assert (twelfth.financial_period, twelfth.transaction_date) == ("202612", dt.date(2026, 11, 29))
    periods = thirteen()
    for planned in (twelfth, thirteenth):
        booked = periods[planned.financial_period]
        assert booked.start_date <= planned.transaction_date <= booked.end_date


def test_weekly_week_53_into_a_monthly_ledger_by_end_date_lands_in_the_next_year() -> None:
    mapping = make_mapping(dimensions=False, period_type=PeriodType.WEEK, period_mapping=PeriodMapping.END_DATE)
    run = make_run(period=53, period_type=PeriodType.WEEK)
    lines = parse_journal_xml(
        journal_xml([balanced("2027-01-03", "2026/53"), balanced("2027-01-03", "2026/52", "3,00")])
    )
    week52, week53 = build_transactions(lines, run, mapping, reference(monthly()))
    assert (week52.financial_period, week52.transaction_date) == ("202612", dt.date(2026, 12, 27))
    assert (week53.financial_period, week53.transaction_date) == ("202701", dt.date(2027, 1, 3))
    assert week53.posting_key != week52.posting_key


def test_a_week_53_in_a_year_without_one_is_refused_naming_it() -> None:
    mapping = make_mapping(dimensions=False, period_type=PeriodType.WEEK, period_mapping=PeriodMapping.END_DATE)
    run = make_run(year=2025, period=52, period_type=PeriodType.WEEK)
    lines = parse_journal_xml(journal_xml([balanced("2025-12-28", "2025/53")]))
    plan = plan_run(lines, run, mapping, reference(monthly()))
    assert [r.code for r in plan.refusals] == ["invalid_journal"]
    assert "payroll period 53 of 2025 does not exist" in plan.refusals[0].message


def test_a_fiscal_year_from_july_numbered_by_end_date() -> None:
    # a monthly payroll: March 2026 is financial period 202509 of a fiscal year July 2025 .. June 2026
    mapping = make_mapping(dimensions=False, period_mapping=PeriodMapping.END_DATE)
    run = make_run(period=3)
    lines = parse_journal_xml(journal_xml([balanced("2026-03-25", "2026/3")]))
    (only,) = build_transactions(lines, run, mapping, reference(monthly(start_month=7)))
    assert (only.payroll_period, only.financial_period, only.transaction_date) == (
        "202603",
        "202509",
        dt.date(2026, 3, 25),
    )


def test_a_fiscal_year_from_july_numbered_by_number_is_refused_naming_both_periods() -> None:
    run = make_run(period=3)
    lines = parse_journal_xml(journal_xml([balanced("2026-03-25", "2026/3")]))
    plan = plan_run(lines, run, make_mapping(dimensions=False), reference(monthly(start_month=7)))
    (refusal,) = plan.refusals
    assert refusal.code == "period_not_mapped"
    assert "payroll period 2026-03" in refusal.message and "financial period 202603" in refusal.message


def test_a_payroll_period_past_the_ledger_is_refused_naming_both() -> None:
    run = make_run(year=2027, period=13, period_type=PeriodType.FOUR_WEEKS)
    lines = parse_journal_xml(journal_xml([balanced("2027-12-31", "2027/13")]))
    end_date = plan_run(lines, run, FOUR_WEEKLY, reference(monthly((2026,))))
    assert [r.code for r in end_date.refusals] == ["period_missing"]
    assert "payroll period 2027/13" in end_date.refusals[0].message
    by_number = FOUR_WEEKLY.model_copy(update={"period_mapping": PeriodMapping.NUMBER})
    missing = plan_run(lines, run, by_number, reference(thirteen((2026,))))
    assert [r.code for r in missing.refusals] == ["period_missing"]
    assert "financial period 202713" in missing.refusals[0].message


def test_a_closed_financial_period_refuses_the_payroll_period_mapped_to_it() -> None:
    periods = monthly()
    periods["202601"] = periods["202601"].model_copy(update={"closed_in_gl": True})
    run = make_run(period=1, period_type=PeriodType.FOUR_WEEKS)
    lines = parse_journal_xml(journal_xml([balanced("2026-01-20", "2026/1")]))
    (refusal,) = plan_run(lines, run, FOUR_WEEKLY, reference(periods)).refusals
    assert refusal.code == "period_closed" and refusal.period_id == "202601"
    assert "payroll period 2026/01" in refusal.message


def test_a_four_week_payroll_needs_a_period_mapping() -> None:
    with pytest.raises(ValidationError, match="company 1002: a 4-weeks payroll needs period_mapping"):
        make_mapping(period_type=PeriodType.FOUR_WEEKS)
    # a run Nmbrs reports as weekly, mapped without one (the mapping's own type is for journal files)
    run = make_run(period=5, period_type=PeriodType.WEEK)
    lines = parse_journal_xml(journal_xml([balanced("2026-02-01", "2026/5")]))
    (refusal,) = plan_run(lines, run, make_mapping(dimensions=False), reference(monthly())).refusals
    assert refusal.code == "period_not_mapped" and "company 1002" in refusal.message
