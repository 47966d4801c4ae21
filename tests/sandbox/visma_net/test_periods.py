"""Financial periods in the emulator: fiscal calendars of 12 or 13 periods from any month, six workspace closings
each on its own, `GET /v1/financialPeriod` held to the spec, and the creates a period refuses."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import httpx2
import pytest

from nmbrs_visma.clients.visma_connect import VismaConnectAuth
from nmbrs_visma.sandbox import demo_data
from nmbrs_visma.sandbox.visma_net import LEDGERS, OAuthClient
from nmbrs_visma.sandbox.visma_net.world import Tenant, fiscal_periods, fiscal_year_bounds
from tests.support import TENANT, Sandbox, dumps, journal

from .spec import Spec

D = dt.date
JULY = "2000101"  # fiscal years from July, named by the year they start in
JULY_NEXT = "2000102"  # fiscal years from July, named by the year they end in ("Belongs to next year")
THIRTEEN = "2000103"  # 13 periods of 28 days from January 1st
CLIENT_ID, CLIENT_SECRET = "nv-test-calendars", "nv-test-calendars-secret"

FLAGS = {
    "supplier": "closedInSupplierLedger",
    "customer": "closedInCustomerLedger",
    "inventory": "closedInInventoryManagement",
    "general": "closedInGeneralLedger",
    "cash": "closedInCashManagement",
    "fixed_assets": "closedInFixedAssets",
}


@pytest.fixture(scope="module")
def calendars(sandbox: Sandbox) -> Sandbox:
    """The module's emulator with three more tenants of other calendars and a service client for them."""
    world = sandbox.world
    world.add_tenant(JULY, "July calendar", fiscal_start_month=7)
    world.add_tenant(JULY_NEXT, "July calendar, next year", fiscal_start_month=7, belongs_to_next_year=True)
    world.add_tenant(THIRTEEN, "Four-weekly calendar", periods_per_year=13, closed_periods=(), inactive_periods=())
    world.add_client(OAuthClient(CLIENT_ID, CLIENT_SECRET, "service", frozenset({JULY, JULY_NEXT, THIRTEEN})))
    return sandbox


@pytest.fixture
def spare(calendars: Sandbox) -> Iterator[Tenant]:
    """The 13-period tenant; every period reopened after the test."""
    tenant = calendars.world.tenants[THIRTEEN]
    yield tenant
    for period_id in tenant.periods:
        tenant.open_period(period_id)


def _auth(sandbox: Sandbox, tenant_id: str) -> VismaConnectAuth:
    """The service flow for `tenant_id`: the demo service client for TENANT, the calendars' own client for theirs
    (the demo client may not use them)."""
    if tenant_id == TENANT:
        return sandbox.service_auth()
    return sandbox.service_auth(tenant_id, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def _periods(sandbox: Sandbox, tenant_id: str, **params: str) -> list[dict[str, Any]]:
    answer = sandbox.request("GET", "/v1/financialPeriod", auth=_auth(sandbox, tenant_id), params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _create(sandbox: Sandbox, tenant_id: str, body: dict[str, Any]) -> httpx2.Response:
    return sandbox.create(dumps(body), auth=_auth(sandbox, tenant_id))


# -- the calendars, as pure functions --


@pytest.mark.parametrize(
    ("year", "month", "next_year", "bounds"),
    [
        (2026, 1, False, (D(2026, 1, 1), D(2026, 12, 31))),
        (2026, 7, False, (D(2026, 7, 1), D(2027, 6, 30))),
        (2026, 7, True, (D(2025, 7, 1), D(2026, 6, 30))),
        (2027, 3, False, (D(2027, 3, 1), D(2028, 2, 29))),
    ],
)
def test_a_fiscal_year_is_twelve_months_named_by_its_first_or_its_next_year(
    year: int, month: int, next_year: bool, bounds: tuple[dt.date, dt.date]
) -> None:
    assert fiscal_year_bounds(year, month, next_year) == bounds


@pytest.mark.parametrize("count", [12, 13])
@pytest.mark.parametrize(("year", "month"), [(2026, 1), (2026, 7), (2027, 3), (2028, 12)])
def test_the_periods_cover_the_fiscal_year_day_by_day(count: int, year: int, month: int) -> None:
    periods = fiscal_periods(year, count, month)
    first, last = fiscal_year_bounds(year, month)
    assert [p[0] for p in periods] == [f"{year}{n:02d}" for n in range(1, count + 1)]
    assert periods[0][1] == first and periods[-1][2] == last
    for (_, _, end, _), (_, start, _, _) in pairwise(periods):
        assert start == end + dt.timedelta(days=1)


def test_a_twelve_period_year_from_july_has_the_months_from_july() -> None:
    periods = {p[0]: p[1:] for p in fiscal_periods(2026, 12, 7)}
    assert periods["202601"] == (D(2026, 7, 1), D(2026, 7, 31), "July")
    assert periods["202607"] == (D(2027, 1, 1), D(2027, 1, 31), "January")
    assert periods["202608"] == (D(2027, 2, 1), D(2027, 2, 28), "February")
    assert periods["202612"] == (D(2027, 6, 1), D(2027, 6, 30), "June")


def test_thirteen_periods_are_28_days_the_last_one_taking_the_rest() -> None:
    periods = fiscal_periods(2026, 13)
    assert [end - start + dt.timedelta(days=1) for _, start, end, _ in periods[:12]] == [dt.timedelta(28)] * 12
    assert periods[0][1:3] == (D(2026, 1, 1), D(2026, 1, 28))
    assert periods[12][1:] == (D(2026, 12, 3), D(2026, 12, 31), "Period 13")  # 29 days
    leap = fiscal_periods(2027, 13, 3)  # 2027-03-01..2028-02-29 holds a February 29th
    assert leap[12][1:3] == (D(2028, 1, 31), D(2028, 2, 29))  # 30 days: 366 - 12 * 28


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"periods_per_year": 52}, "12 or 13"), ({"fiscal_start_month": 0}, "1..12")]
)
def test_an_unknown_calendar_is_an_error(sandbox: Sandbox, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sandbox.world.add_tenant("2000199", "Bad calendar", **kwargs)


# -- closing and opening --


def test_a_period_closes_and_opens_per_workspace(spare: Tenant) -> None:
    assert spare.periods["202603"].closed_in == frozenset()
    spare.close_period("202603", ledgers=("general",))
    assert spare.periods["202603"].closed_in == {"general"} and spare.periods["202603"].closed_in_gl
    spare.close_period("202603", ledgers=("cash", "supplier"))
    assert spare.periods["202603"].closed_in == {"general", "cash", "supplier"}
    spare.open_period("202603", ledgers=("general",))
    assert spare.periods["202603"].closed_in == {"cash", "supplier"} and not spare.periods["202603"].closed_in_gl
    spare.close_period("202604")
    assert spare.periods["202604"].closed_in == frozenset(LEDGERS)
    with pytest.raises(ValueError, match="not a workspace ledger: ledger"):
        spare.close_period("202605", ledgers=("ledger",))  # type: ignore[arg-type]


# -- GET /v1/financialPeriod --


@pytest.mark.contract
@pytest.mark.parametrize("tenant_id", [TENANT, JULY, JULY_NEXT, THIRTEEN])
def test_every_period_answer_matches_the_spec_exactly(calendars: Sandbox, spec: Spec, tenant_id: str) -> None:
    periods = _periods(calendars, tenant_id)
    errors = list(spec.response_validator("GET", "/v1/financialPeriod").iter_errors(periods))
    assert not errors, f"{errors[0].message} at {list(errors[0].path)}"
    doc, _ = spec.operation("GET", "/v1/financialPeriod")
    defined = set(doc["components"]["schemas"]["FinancialPeriodDto"]["properties"])
    assert all(set(period) == defined for period in periods)  # every property, none more


def test_the_demo_tenants_keep_their_calendar_months(sandbox: Sandbox) -> None:
    with sandbox.client() as client:
        periods = client.financial_periods()
    assert len(periods) == 12 * len(demo_data.YEARS)
    march = periods["202603"]
    assert (march.start_date, march.end_date, march.active, march.closed_in_gl) == (
        D(2026, 3, 1),
        D(2026, 3, 31),
        True,
        False,
    )
    assert {p for p, period in periods.items() if period.closed_in_gl} == demo_data.CLOSED_PERIODS
    assert {p for p, period in periods.items() if not period.active} == demo_data.INACTIVE_PERIODS


def test_a_july_calendar_is_served_with_its_real_dates(calendars: Sandbox) -> None:
    by_id = {p["period"]: p for p in _periods(calendars, JULY)}
    assert (by_id["202601"]["startDate"], by_id["202601"]["endDate"]) == ("2026-07-01T00:00:00", "2026-07-31T00:00:00")
    assert by_id["202612"]["year"] == 2026 and by_id["202612"]["endDate"] == "2027-06-30T00:00:00"
    assert by_id["202612"]["description"] == "June"
    named_by_end = {p["period"]: p for p in _periods(calendars, JULY_NEXT)}
    assert named_by_end["202601"]["startDate"] == "2025-07-01T00:00:00"
    with calendars.client(_auth(calendars, JULY)) as client:
        assert client.financial_periods()["202607"].start_date == D(2027, 1, 1)


def test_a_thirteen_period_calendar_is_served_with_its_real_dates(calendars: Sandbox) -> None:
    periods = _periods(calendars, THIRTEEN)
    assert len(periods) == 13 * len(demo_data.YEARS)
    by_id = {p["period"]: p for p in periods}
    assert (by_id["202602"]["startDate"], by_id["202602"]["endDate"]) == ("2026-01-29T00:00:00", "2026-02-25T00:00:00")
    assert (by_id["202613"]["startDate"], by_id["202613"]["endDate"]) == ("2026-12-03T00:00:00", "2026-12-31T00:00:00")


@pytest.mark.parametrize("ledger", LEDGERS)
def test_each_closed_in_flag_is_served_on_its_own(calendars: Sandbox, spare: Tenant, ledger: str) -> None:
    spare.close_period("202605", ledgers=(ledger,))  # type: ignore[arg-type]
    (may,) = [p for p in _periods(calendars, THIRTEEN) if p["period"] == "202605"]
    assert {flag: may[flag] for flag in FLAGS.values()} == {flag: name == ledger for name, flag in FLAGS.items()}


@pytest.mark.parametrize(
    ("greater_than", "first", "count"),
    [("2025", "202601", 13), ("202611", "202612", 2), ("202613", None, 0), ("2024", "202501", 26)],
)
def test_greater_than_value_takes_a_year_or_a_period(
    calendars: Sandbox, greater_than: str, first: str | None, count: int
) -> None:
    periods = _periods(calendars, THIRTEEN, greaterThanValue=greater_than)
    assert len(periods) == count and (periods[0]["period"] if periods else None) == first


# -- what a create is refused for --


def test_a_create_in_a_period_the_calendar_does_not_hold_is_refused(calendars: Sandbox) -> None:
    refused = _create(calendars, JULY, journal("202613"))
    assert refused.status_code == 400 and refused.json()["ExceptionFaultCode"] == "FinancialPeriodNotFound"
    thirteenth = journal("202613")
    thirteenth["transactionDate"] = {"value": "2026-12-10T00:00:00"}
    created = _create(calendars, THIRTEEN, thirteenth)
    assert created.status_code == 201, created.text  # a 13th period exists there


def test_a_create_in_a_period_closed_in_the_general_ledger_is_refused(calendars: Sandbox, spare: Tenant) -> None:
    spare.close_period("202606", ledgers=("supplier", "customer", "inventory", "cash", "fixed_assets"))
    assert _create(calendars, THIRTEEN, journal("202606")).status_code == 201  # open in the general ledger
    spare.close_period("202606", ledgers=("general",))
    refused = _create(calendars, THIRTEEN, journal("202606"))
    assert refused.status_code == 400, refused.text
    assert refused.json()["ExceptionFaultCode"] == "FinancialPeriodClosed"
    assert "202606" in refused.json()["ExceptionMessage"]


def test_a_transaction_date_outside_the_period_is_not_refused(calendars: Sandbox) -> None:
    """Visma.net documents no such refusal (see journal._period), so the emulator books it."""
    body = journal("202601")  # dated 2026-01-28: period 202601 of the July calendar is July 2026
    created = _create(calendars, JULY, body)
    assert created.status_code == 201, created.text
    (booked,) = [tx for tx in calendars.world.transactions(JULY) if tx.period_id == "202601"]
    assert booked.transaction_date == D(2026, 1, 28)
