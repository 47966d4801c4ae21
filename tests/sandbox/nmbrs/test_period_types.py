"""Four-weekly and weekly companies, over real HTTP: the emulator's period answer and runs keep the spec, their
journals parse (product parser) into the company's own periods with dates inside them; and monthly documents
stay byte for byte what they were before period types existed. (How strictly the client reads answers the
emulator would never give: tests/clients/test_nmbrs_periods.py.)"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator

from nmbrs_visma.clients.nmbrs import JOURNAL_KINDS, CompanyPeriod, NmbrsCompany
from nmbrs_visma.journals.calendar import period_dates, periods_in_year
from nmbrs_visma.journals.models import PayrollRun, PeriodType
from nmbrs_visma.journals.split import own_periods
from nmbrs_visma.sandbox.demo_data import COMPANIES
from nmbrs_visma.sandbox.nmbrs import NmbrsWorld
from nmbrs_visma.sandbox.nmbrs.api import _run_json
from nmbrs_visma.sandbox.nmbrs.ledger import period_span, periods_in
from nmbrs_visma.sandbox.nmbrs.world import display_period
from tests.support import FOUR_WEEKLY, PERIODIC_YEAR, WEEKLY, frame_totals, nmbrs_company, periodic_world

from .spec import check_exchange, resolve

BASELINE = Path(__file__).parent / "data" / "monthly_documents.sha256.json"
YEAR = PERIODIC_YEAR


@pytest.fixture
def world() -> NmbrsWorld:
    """The demo world with a four-weekly and a weekly company (overrides tests/conftest.py's `world`)."""
    return periodic_world()


def run_of(runs: list[PayrollRun], period_end: int) -> PayrollRun:
    return next(run for run in runs if run.period_end == period_end)


def header_dates(frame: Any) -> dict[str, dt.date]:
    """period_id -> the (one) header date of its transaction."""
    dates = frame.groupby("period_id")["date"].agg(["min", "max"])
    assert (dates["min"] == dates["max"]).all()
    return {period_id: stamp.date() for period_id, stamp in dates["max"].items()}


# --- monthly documents are unchanged ---------------------------------------------------------------------------


def test_monthly_documents_and_runs_are_byte_for_byte_what_they_were() -> None:
    """Digests taken with the emulator as it was before period types (demo runs, and December runs correcting
    three months, in every XML style): the demo and many tests depend on these exact bytes."""
    world = NmbrsWorld().seed_demo()
    monthly = {company.company_id for company in COMPANIES if company.period_type == "month"}
    runs = [(world.companies[c], run) for c, runs in world.runs.items() if c in monthly for run in runs]
    runs += [(company, world.add_run(company, 2026, 12, corrections=(2, 7, 11))) for company in COMPANIES[:4]]
    digests = {}
    for company, run in runs:
        key = f"{company.number}/{run.year}/{run.period_end}"
        for kind in JOURNAL_KINDS:
            digests[f"{key}/{kind}"] = hashlib.sha256(world.journal_document(run, kind)).hexdigest()
        listed = json.dumps(_run_json(run), sort_keys=True).encode()
        digests[f"{key}/run"] = hashlib.sha256(listed).hexdigest()
    assert digests == json.loads(BASELINE.read_text(encoding="utf-8"))


# --- the emulator's own calendar ---------------------------------------------------------------------------------


def test_the_emulators_period_dates_agree_with_the_products_calendar() -> None:
    """Two independent computations (the emulator's `fromisocalendar` arithmetic, journals/calendar.py)."""
    for year in range(2015, 2033):
        for period_type in PeriodType:
            count = periods_in(year, period_type)
            assert count == periods_in_year(year, period_type), (year, period_type)
            for period in range(1, count + 1):
                assert period_span(year, period, period_type) == period_dates(year, period, period_type)


@pytest.mark.parametrize(
    ("period_type", "year", "period", "first", "last"),
    [
        (PeriodType.FOUR_WEEKS, 2026, 1, dt.date(2025, 12, 29), dt.date(2026, 1, 25)),
        (PeriodType.FOUR_WEEKS, 2026, 13, dt.date(2026, 11, 30), dt.date(2027, 1, 3)),  # weeks 49..53
        (PeriodType.FOUR_WEEKS, 2025, 13, dt.date(2025, 12, 1), dt.date(2025, 12, 28)),  # weeks 49..52
        (PeriodType.WEEK, 2026, 53, dt.date(2026, 12, 28), dt.date(2027, 1, 3)),
        (PeriodType.WEEK, 2026, 1, dt.date(2025, 12, 29), dt.date(2026, 1, 4)),
        (PeriodType.MONTH, 2024, 2, dt.date(2024, 2, 1), dt.date(2024, 2, 29)),
    ],
)
def test_period_edges(period_type: PeriodType, year: int, period: int, first: dt.date, last: dt.date) -> None:
    assert period_span(year, period, period_type) == (first, last)


@pytest.mark.parametrize(
    ("period_type", "year", "period"),
    [
        (PeriodType.MONTH, 2026, 13),
        (PeriodType.FOUR_WEEKS, 2026, 14),
        (PeriodType.FOUR_WEEKS, 2026, 0),
        (PeriodType.WEEK, 2025, 53),  # 2025 has 52 ISO weeks
        (PeriodType.WEEK, 2026, 54),
    ],
)
def test_a_run_for_a_period_the_year_does_not_have_is_refused(period_type: PeriodType, year: int, period: int) -> None:
    world = NmbrsWorld().seed_demo()
    company = world.add_company_like(COMPANIES[0], 3999, period_type)
    with pytest.raises(ValueError, match=f"period {period} does not exist in {year}"):
        world.add_run(company, year, period)
    assert world.runs[company.company_id] == []


def test_a_run_starting_after_its_end_or_correcting_a_later_period_is_refused(world) -> None:
    company = world.company_by_number(WEEKLY)
    with pytest.raises(ValueError, match="start in period 5 after its last period 4"):
        world.add_run(company, YEAR, 4, period_start=5)
    with pytest.raises(ValueError, match=r"corrections \[10\]"):
        world.add_run(company, YEAR, 10, corrections=(9, 10))


def test_current_periods_are_in_the_companys_own_numbering(world) -> None:
    four, week = (world.company_by_number(n).company_id for n in (FOUR_WEEKLY, WEEKLY))
    assert world.current_period_of(four) == (2026, 4)  # 31 March 2026 lies in ISO week 14: period 4
    assert world.current_period_of(week) == (2026, 14)
    world.set_current_period(four, 2026, 13)
    assert world.current_period_of(four) == (2026, 13)
    with pytest.raises(ValueError):
        world.set_current_period(week, 2025, 53)
    assert display_period(2026, 13, PeriodType.FOUR_WEEKS) == "2026-13-4W"
    assert display_period(2026, 53, PeriodType.WEEK) == "2026-53-W"
    assert display_period(2021, 2, PeriodType.MONTH) == "2021-2-M"  # the spec's own example


# --- over HTTP: the period answer ---------------------------------------------------------------------------


def test_a_four_weekly_companys_period_answer_keeps_the_spec(spec, client, world) -> None:
    schema = resolve(spec["components"]["schemas"]["CompanyPeriodResponse"], spec)
    four = world.company_by_number(FOUR_WEEKLY).company_id
    world.set_current_period(four, 2026, 13)
    answers = {
        number: client._json(f"/api/companies/{world.company_by_number(number).company_id}/period", None, "period")
        for number in (FOUR_WEEKLY, WEEKLY, 1001)
    }
    for body in answers.values():
        OAS30Validator(schema).validate(body)
    assert answers[FOUR_WEEKLY]["data"] == [
        {"period": {"year": 2026, "period": 13}, "periodType": "4-weeks", "displayPeriod": "2026-13-4W"}
    ]
    assert answers[WEEKLY]["data"][0] == {
        "period": {"year": 2026, "period": 14},
        "periodType": "1-week",
        "displayPeriod": "2026-14-W",
    }
    assert answers[1001]["data"][0] == {
        "period": {"year": 2026, "period": 3},
        "periodType": "month",
        "displayPeriod": "2026-3-M",
    }
    for exchange in world.calls("/api/companies/"):
        assert check_exchange(exchange, spec) == "/api/companies/{companyId}/period"


def test_the_client_reads_period_type_and_current_period(client, world) -> None:
    four, week, month = (world.company_by_number(n).company_id for n in (FOUR_WEEKLY, WEEKLY, 1001))
    world.set_current_period(week, 2026, 53)
    assert client.company_period(four) == CompanyPeriod(
        company_id=four, period_type=PeriodType.FOUR_WEEKS, year=2026, period=4, display_period="2026-4-4W"
    )
    assert client.company_period(week).period_type is PeriodType.WEEK
    assert client.current_period(week) == (2026, 53)
    assert client.company_period(month).period_type is PeriodType.MONTH
    assert client.current_period(month) == (2026, 3)


# --- over HTTP: runs and their journals ---------------------------------------------------------------------


def test_runs_of_a_four_weekly_company_are_listed_locked_or_not_in_the_specs_shape(spec, client, world) -> None:
    company = nmbrs_company(FOUR_WEEKLY, world)
    runs = client.runs(company, YEAR, period_type=PeriodType.FOUR_WEEKS)
    assert [(r.run_number, r.period_start, r.period_end, r.locked) for r in runs] == [
        (1, 1, 1, True),
        (2, 2, 2, True),
        (3, 13, 13, False),
    ]
    assert {r.period_type for r in runs} == {PeriodType.FOUR_WEEKS}
    raw = client._json(f"/api/companies/{company.company_id}/runs", {"year": YEAR}, "runs")["data"]
    assert [(item["periodStart"], item["periodEnd"], item["locked"]) for item in raw] == [
        (1, 1, True),
        (2, 2, True),
        (13, 13, False),
    ]
    assert all(type(item["periodStart"]) is int and type(item["locked"]) is bool for item in raw)
    assert raw[2]["createdAt"] == "2027-01-04T09:00:00Z"  # the morning after period 13 ends (week 53)
    assert raw[2]["type"] == "normal_twk" and raw[0]["description"] == "Salarisrun 4 weken 01/2026"
    for exchange in world.calls("/api/companies/"):
        check_exchange(exchange, spec)


def test_four_weekly_period_1_starts_in_december_and_is_dated_inside_it(client, world) -> None:
    company = nmbrs_company(FOUR_WEEKLY, world)
    run = run_of(client.runs(company, YEAR, period_type=PeriodType.FOUR_WEEKS), 1)
    frame = client.journals(run)
    assert header_dates(frame) == {"202601": dt.date(2026, 1, 25)}
    first, last = period_dates(YEAR, 1, PeriodType.FOUR_WEEKS)
    assert first == dt.date(2025, 12, 29) and first <= header_dates(frame)["202601"] <= last
    assert frame_totals(frame) == world.expected_lines(FOUR_WEEKLY, YEAR, 1)


@pytest.mark.parametrize("kind", JOURNAL_KINDS)
def test_four_weekly_period_13_with_corrections_parses_into_its_own_periods(client, world, kind) -> None:
    company = nmbrs_company(FOUR_WEEKLY, world)
    run = run_of(client.runs(company, YEAR, period_type=PeriodType.FOUR_WEEKS), 13)
    document = client.journal_xml(run, kind=kind)
    text = document.decode("utf-16")  # the Dutch style: UTF-16, P/YYYY periods, YYYYMMDD dates
    assert "<period>13/2026</period>" in text and "<date>20270103</date>" in text
    frame = client.journals(run, kind=kind)
    assert header_dates(frame) == {
        f"{YEAR}{period:02d}": period_dates(YEAR, period, PeriodType.FOUR_WEEKS)[1] for period in (1, 2, 13)
    }
    assert header_dates(frame)["202613"] == dt.date(2027, 1, 3)
    assert frame_totals(frame) == world.expected_lines(FOUR_WEEKLY, YEAR, 13, kind)
    for _period, part in frame.groupby("period_id"):
        assert part["debit_cents"].sum() == part["credit_cents"].sum()


def test_weekly_week_53_of_2026_with_corrections(client, world) -> None:
    company = nmbrs_company(WEEKLY, world)
    runs = client.runs(company, YEAR, period_type=PeriodType.WEEK)
    assert [(r.period_start, r.period_end, r.locked) for r in runs] == [
        (1, 1, True),
        (2, 4, True),
        (52, 52, True),
        (53, 53, False),
    ]
    run = run_of(runs, 53)
    assert run.period_type is PeriodType.WEEK and run.reference == "NM2653R1"
    assert "<period>2026/53</period>" in client.journal_xml(run).decode("utf-8")
    frame = client.journals(run, kind="journalscostcenterunit")
    assert header_dates(frame) == {
        "202651": dt.date(2026, 12, 20),
        "202652": dt.date(2026, 12, 27),
        "202653": dt.date(2027, 1, 3),
    }
    for period_id, day in header_dates(frame).items():
        first, last = period_dates(YEAR, int(period_id[4:]), PeriodType.WEEK)
        assert first <= day <= last
    assert frame_totals(frame) == world.expected_lines(WEEKLY, YEAR, 53, "journalscostcenterunit")


def test_a_weekly_run_spanning_three_weeks_has_a_transaction_per_week(client, world) -> None:
    company = nmbrs_company(WEEKLY, world)
    run = run_of(client.runs(company, YEAR, period_type=PeriodType.WEEK), 4)
    assert (run.period_start, run.period_end) == (2, 4)
    frame = client.journals(run)
    assert set(frame["period_id"]) == own_periods(run) == {"202602", "202603", "202604"}
    assert header_dates(frame) == {
        f"{YEAR}{week:02d}": period_dates(YEAR, week, PeriodType.WEEK)[1] for week in (2, 3, 4)
    }
    for week in (2, 3, 4):  # every week of the span finds the run
        assert world.run_for_period(WEEKLY, YEAR, week).number == run.run_number
    assert frame_totals(frame) == world.expected_lines(WEEKLY, YEAR, 3)


def test_runs_are_monthly_unless_told(client) -> None:
    demo = COMPANIES[0]
    runs = client.runs(NmbrsCompany(company_id=demo.company_id, number=demo.number), YEAR)
    assert runs and {r.period_type for r in runs} == {PeriodType.MONTH}
