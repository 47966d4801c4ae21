"""4-weekly and weekly payrolls through the flow, against both emulators over real HTTP.

A 4-weekly company posts its periods 12 and 13 (13 correcting 11) to a 13-period ledger by number; a weekly
company posts weeks 52 and 53 of 2026 (53 correcting 52) to a monthly ledger by end date, where week 53 ends
on 3 January 2027 and is booked in 202701. What lands is checked against Visma.net's own period dates and, to
the cent, against what Nmbrs' journals hold. The emulators are strict (complete subaccounts, no property
outside the schema), so every create here also passed that.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Iterator

import pytest

from nmbrs_visma.results import Status
from nmbrs_visma.sandbox.demo_data import COMPANIES

pytestmark = pytest.mark.slow

FOUR_WEEKLY, WEEKLY = 3001, 3002
THIRTEEN_TENANT, MONTHLY_TENANT = "1000003", "1000001"  # the holding's ledger becomes 13 periods a year here


@pytest.fixture
def payrolls(sandboxes: object) -> Iterator[object]:
    """The two companies in Nmbrs with their runs, their mappings saved, and the ledgers' calendars; all undone
    afterwards (the emulators and the Prefect server are shared by the session)."""
    from nmbrs_visma.blocks.mapping import AdministrationMappingBlock, mapping_block_name
    from nmbrs_visma.demo import visma_account_name
    from nmbrs_visma.journals.models import PeriodMapping
    from nmbrs_visma.sandbox.visma_net.world import PeriodRecord, fiscal_periods

    nmbrs, visma = sandboxes.nmbrs_world, sandboxes.visma_world  # type: ignore[attr-defined]
    saved_nmbrs = {name: copy.copy(getattr(nmbrs, name)) for name in ("companies", "runs", "styles", "period_types")}
    saved_debtors = dict(nmbrs._company_debtor)
    thirteen, monthly = visma.tenants[THIRTEEN_TENANT], visma.tenants[MONTHLY_TENANT]
    saved_periods = {tenant.tenant_id: dict(tenant.periods) for tenant in (thirteen, monthly)}
    template = next(c for c in COMPANIES if c.number == 1001)
    four = nmbrs.add_company_like(template, FOUR_WEEKLY, "4-weeks")
    nmbrs.add_run(four, 2026, 12)
    nmbrs.add_run(four, 2026, 13, corrections=(11,))
    week = nmbrs.add_company_like(template, WEEKLY, "1-week")
    nmbrs.add_run(week, 2026, 52)
    nmbrs.add_run(week, 2026, 53, corrections=(52,))
    thirteen.periods = {
        period_id: PeriodRecord(start, end, True, frozenset(), description)
        for year in (2025, 2026, 2027)
        for period_id, start, end, description in fiscal_periods(year, 13)
    }
    monthly.periods.update(
        {
            period_id: PeriodRecord(start, end, True, frozenset(), description)
            for period_id, start, end, description in fiscal_periods(2027, 12)
        }
    )
    monthly.periods["202612"] = dataclasses.replace(monthly.periods["202612"], active=True)  # inactive in the demo
    blocks = {
        FOUR_WEEKLY: (THIRTEEN_TENANT, PeriodMapping.NUMBER),
        WEEKLY: (MONTHLY_TENANT, PeriodMapping.END_DATE),
    }
    for number, (tenant, period_mapping) in blocks.items():
        AdministrationMappingBlock(
            nmbrs_company=number,
            nmbrs_account="default",
            visma_account=visma_account_name(tenant),
            branch="1",
            ledger="L",
            period_mapping=period_mapping,
        ).save(mapping_block_name(number), overwrite=True, _sync=True)
    try:
        yield sandboxes
    finally:
        for number in blocks:
            AdministrationMappingBlock.delete(mapping_block_name(number), _sync=True)  # type: ignore[call-arg]
        for name, value in saved_nmbrs.items():
            setattr(nmbrs, name, value)
        nmbrs._company_debtor = saved_debtors
        thirteen.periods = saved_periods[THIRTEEN_TENANT]
        monthly.periods = saved_periods[MONTHLY_TENANT]


def _booked(sandboxes: object, tenant_id: str, company: int) -> list[object]:
    world = sandboxes.visma_world  # type: ignore[attr-defined]
    return [t for t in world.transactions(tenant_id) if f"company {company}" in t.description]


def _cents(transactions: list[object]) -> Counter[tuple[str, str, str]]:
    totals: Counter[tuple[str, str, str]] = Counter()
    for transaction in transactions:
        for line in transaction.lines:  # type: ignore[attr-defined]
            if line.debit:
                totals[(transaction.period_id, line.account, "debit")] += int(line.debit * 100)  # type: ignore[attr-defined]
            if line.credit:
                totals[(transaction.period_id, line.account, "credit")] += int(line.credit * 100)
    return Counter({key: cents for key, cents in totals.items() if cents})


def _expected(sandboxes: object, company: int, periods: dict[int, int], booked_in: dict[str, str]) -> Counter:
    """What Nmbrs' journals of the company's runs (by their period) hold, keyed by the financial period booked."""
    nmbrs = sandboxes.nmbrs_world  # type: ignore[attr-defined]
    totals: Counter[tuple[str, str, str]] = Counter()
    for period in periods:
        for (payroll_period, account, _, _, side), cents in nmbrs.expected_lines(company, 2026, period).items():
            totals[(booked_in[payroll_period], account, side)] += cents
    return Counter({key: cents for key, cents in totals.items() if cents})


def _inside_their_periods(sandboxes: object, tenant_id: str, transactions: list[object]) -> None:
    periods = sandboxes.visma_world.tenants[tenant_id].periods  # type: ignore[attr-defined]
    for transaction in transactions:
        booked = periods[transaction.period_id]  # type: ignore[attr-defined]
        assert booked.start <= transaction.transaction_date <= booked.end, transaction  # type: ignore[attr-defined]


def test_four_weekly_into_13_periods_and_weekly_across_week_53(payrolls: object) -> None:
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

    rows = pass_rows(post_payroll_journals(companies=[FOUR_WEEKLY, WEEKLY], return_state=True))
    assert {row.status for row in rows} == {Status.SENT}, [(r.company, r.status, r.reason) for r in rows]

    four = _booked(payrolls, THIRTEEN_TENANT, FOUR_WEEKLY)
    # run 12: its period 12; run 13: period 13 and its correction of period 11, each in the period of its number
    assert sorted(t.period_id for t in four) == ["202611", "202612", "202613"]  # type: ignore[attr-defined]
    _inside_their_periods(payrolls, THIRTEEN_TENANT, four)
    thirteenth = next(t for t in four if t.period_id == "202613")  # type: ignore[attr-defined]
    assert str(thirteenth.transaction_date) == "2026-12-31"  # period 13 ends 3 January: kept inside December
    by_number = {f"2026{n:02d}": f"2026{n:02d}" for n in (11, 12, 13)}
    assert _cents(four) == _expected(payrolls, FOUR_WEEKLY, {12: 1, 13: 1}, by_number)

    week = _booked(payrolls, MONTHLY_TENANT, WEEKLY)
    assert sorted(t.period_id for t in week) == ["202612", "202612", "202701"]  # type: ignore[attr-defined]
    _inside_their_periods(payrolls, MONTHLY_TENANT, week)
    by_end_date = {"202652": "202612", "202653": "202701"}
    assert _cents(week) == _expected(payrolls, WEEKLY, {52: 1, 53: 1}, by_end_date)

    # the next pass: both runs are booked, nothing is read again or sent
    again = pass_rows(post_payroll_journals(companies=[FOUR_WEEKLY, WEEKLY], return_state=True))
    assert {row.status for row in again} == {Status.NO_RUN}
    assert len(_booked(payrolls, THIRTEEN_TENANT, FOUR_WEEKLY)) == 3


def test_a_payroll_period_given_as_yyyy_nn_picks_that_run(payrolls: object) -> None:
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

    rows = pass_rows(post_payroll_journals(period="2026/53", companies=[WEEKLY], return_state=True))
    assert {(row.reference, row.status) for row in rows} == {("NM2653R1", Status.SENT)}
    assert sorted(row.period for row in rows) == ["202612", "202701"]
    # a month names the 4-weekly periods ending in it: period 13 of 2026 ends on 3 January 2027
    rows = pass_rows(post_payroll_journals(period="2027-01", companies=[FOUR_WEEKLY], return_state=True))
    assert {(row.reference, row.period) for row in rows} == {("NM2613R1", "202611"), ("NM2613R1", "202613")}
    rows = pass_rows(
        post_payroll_journals(period="2026-11", companies=[FOUR_WEEKLY], return_state=True)
    )  # period 12 ends on 29 November
    assert {(row.reference, row.period) for row in rows} == {("NM2612R1", "202612")}
