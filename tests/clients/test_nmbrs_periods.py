"""The Nmbrs client reads a company's period type and its runs' periods strictly: an answer it cannot number
(an unknown period type, a period the year does not have, a date where a number belongs) is refused, naming
the company and the value. The emulator keeps the spec, so these answers come from a tiny off-spec server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from nmbrs_visma.clients.errors import ResponseError
from nmbrs_visma.clients.nmbrs import NmbrsAuth, NmbrsClient, NmbrsCompany
from nmbrs_visma.journals.models import PeriodType
from nmbrs_visma.sandbox.server import RunningServer, serving
from tests.support import NMBRS_FAST, PERIODIC_YEAR

YEAR = PERIODIC_YEAR


class OffSpecNmbrs:
    """A tiny server that answers `/period` and `/runs` with whatever a test puts in `period` and `runs`:
    the emulator keeps the spec, so answers that break it come from here."""

    def __init__(self) -> None:
        self.period: dict[str, Any] = {}
        self.runs: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.get("/api/companies/{company_id}/period")(lambda company_id: {"data": [self.period]})
        self.app.get("/api/companies/{company_id}/runs")(self._runs)

    def _runs(self, company_id: str) -> dict[str, Any]:
        pages = {"pageNumber": 1, "pageSize": 100, "totalPages": 1, "totalRecords": len(self.runs)}
        return {"pagination": pages, "data": self.runs}


@pytest.fixture
def off_spec() -> Iterator[tuple[OffSpecNmbrs, RunningServer]]:
    fake = OffSpecNmbrs()
    with serving(fake.app) as running:
        yield fake, running


@pytest.fixture
def off_spec_client(off_spec) -> Iterator[NmbrsClient]:
    _fake, running = off_spec
    auth = NmbrsAuth(
        client_id="test",
        client_secret=SecretStr("test-secret"),
        redirect_uri="http://127.0.0.1/callback",
        token={"access_token": "static-test-token", "token_type": "Bearer"},
    )
    with NmbrsClient(base_url=running.url, auth=auth, subscription_key=SecretStr("k"), policy=NMBRS_FAST) as client:
        yield client


COMPANY_ID = "3a0e0000-0000-4000-8000-00000000ffff"


def run_item(start: Any, end: Any, year: int = YEAR) -> dict[str, Any]:
    return {
        "payrollRunId": "a405f980-1c4c-42c1-8ddb-2d90c58da0b1",
        "number": 1,
        "year": year,
        "periodStart": start,
        "periodEnd": end,
        "locked": True,
    }


@pytest.mark.parametrize("period_type", ["2-weeks", "Month", "", None, 4])
def test_an_unknown_period_type_is_refused_naming_company_and_value(off_spec, off_spec_client, period_type) -> None:
    fake, _running = off_spec
    fake.period = {"period": {"year": 2026, "period": 3}, "periodType": period_type, "displayPeriod": "2026-3-X"}
    with pytest.raises(ResponseError) as caught:
        off_spec_client.company_period(COMPANY_ID)
    assert COMPANY_ID in str(caught.value) and f"periodType {period_type!r}" in str(caught.value)
    with pytest.raises(ResponseError):
        off_spec_client.current_period(COMPANY_ID)


def test_a_current_period_the_type_does_not_have_is_refused(off_spec, off_spec_client) -> None:
    fake, _running = off_spec
    fake.period = {"period": {"year": 2025, "period": 53}, "periodType": "1-week", "displayPeriod": "2025-53-W"}
    with pytest.raises(ResponseError, match="period 53 of 2025 does not exist"):
        off_spec_client.company_period(COMPANY_ID)


@pytest.mark.parametrize(
    ("period_type", "start", "end", "message"),
    [
        (PeriodType.FOUR_WEEKS, 14, 14, "period 14 of 2026 does not exist for a 4-weeks company"),
        (PeriodType.WEEK, 54, 54, "period 54 of 2026 does not exist"),
        (PeriodType.MONTH, 13, 13, "period 13 of 2026 does not exist for a month company"),
        (PeriodType.WEEK, "2026-03-31T00:00:00Z", 14, "not a number of a 1-week period"),
        (PeriodType.FOUR_WEEKS, 3, "2026-03-31T00:00:00Z", "not a number of a 4-weeks period"),
        (PeriodType.WEEK, 5, 4, "periodStart 5 lies after periodEnd 4"),
        (PeriodType.WEEK, True, 4, "is not a number"),
    ],
)
def test_runs_with_periods_out_of_the_types_range_are_refused(
    off_spec, off_spec_client, period_type, start, end, message
) -> None:
    fake, _running = off_spec
    fake.runs = [run_item(start, end)]
    company = NmbrsCompany(company_id=COMPANY_ID, number=9)
    with pytest.raises(ResponseError, match=message) as caught:
        off_spec_client.runs(company, YEAR, period_type=period_type)
    assert "company 9" in str(caught.value)


def test_week_53_is_read_in_a_53_week_year_only(off_spec, off_spec_client) -> None:
    fake, _running = off_spec
    company = NmbrsCompany(company_id=COMPANY_ID, number=9)
    fake.runs = [run_item(53, 53, year=2026)]
    assert off_spec_client.runs(company, 2026, period_type=PeriodType.WEEK)[0].period_end == 53
    fake.runs = [run_item(53, 53, year=2025)]
    with pytest.raises(ResponseError, match="period 53 of 2025"):
        off_spec_client.runs(company, 2025, period_type=PeriodType.WEEK)


def test_a_date_time_period_is_still_read_as_its_month_for_a_monthly_company(off_spec, off_spec_client) -> None:
    fake, _running = off_spec
    fake.runs = [run_item("2026-02-01T00:00:00Z", "2026-03-31T00:00:00Z")]
    run = off_spec_client.runs(NmbrsCompany(company_id=COMPANY_ID, number=9), YEAR)[0]
    assert (run.period_start, run.period_end, run.period_type) == (2, 3, PeriodType.MONTH)
