"""Which runs a pass posts (tasks/runs.py): locked, unlocked, booked before, partly booked; filters; years."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nmbrs_visma.journals.calendar import period_dates
from nmbrs_visma.journals.models import PayrollRun, PeriodType
from nmbrs_visma.payroll_period import period_filter, range_filter
from nmbrs_visma.posting_ledger import CompletedRun
from nmbrs_visma.tasks.runs import RunFilter, select_runs, with_sequence, years_to_list
from tests.journals.builders import make_run

RUN_DRIVEN = RunFilter()


def run(number: int, period: int, *, year: int = 2026, locked: bool = True, kind: PeriodType = PeriodType.MONTH):
    return make_run(
        1001, run_id=f"run-{year}-{number}", number=number, period=period, year=year, locked=locked, period_type=kind
    )


def booked(payroll_run: PayrollRun) -> CompletedRun:
    return CompletedRun.of(payroll_run, transactions=1)


def ids(runs: list[PayrollRun]) -> list[str]:
    return [r.run_id for r in runs]


def test_run_driven_posts_the_locked_runs_not_booked_and_reports_the_unlocked_as_waiting() -> None:
    runs = [run(1, 1), run(2, 2), run(3, 3), run(4, 4, locked=False)]
    todo, waiting = select_runs(runs, RUN_DRIVEN, [booked(runs[0])])
    assert ids(todo) == ["run-2026-2", "run-2026-3"]  # a partly booked run is not recorded: it is posted again
    assert ids(waiting) == ["run-2026-4"]
    todo, waiting = select_runs(runs, RUN_DRIVEN, [booked(r) for r in runs[:3]])
    assert (todo, ids(waiting)) == ([], ["run-2026-4"])


def test_a_filter_reads_booked_runs_again_and_the_ledger_answers_already_sent() -> None:
    runs = [run(1, 1), run(2, 2), run(3, 2)]
    todo, _ = select_runs(runs, RunFilter(period=period_filter("2026-02")), [booked(r) for r in runs])
    assert ids(todo) == ["run-2026-2", "run-2026-3"]
    todo, _ = select_runs(runs, RunFilter(run="nm2602r2"), [])  # a reference, in any case
    assert ids(todo) == ["run-2026-3"]
    todo, _ = select_runs(runs, RunFilter(run="run-2026-1"), [])  # or the Nmbrs id
    assert ids(todo) == ["run-2026-1"]
    todo, _ = select_runs(runs, RUN_DRIVEN, [booked(r) for r in runs], skip_booked=False)  # reposting changes
    assert len(todo) == 3


def test_runs_of_one_period_are_numbered_in_their_period_by_run_number() -> None:
    placed = with_sequence([run(7, 2), run(3, 1), run(5, 2)])
    assert [(r.period_end, r.run_number, r.sequence, r.reference) for r in placed] == [
        (1, 3, 1, "NM2601R1"),
        (2, 5, 1, "NM2602R1"),
        (2, 7, 2, "NM2602R2"),
    ]


def test_a_month_names_the_four_week_periods_ending_in_it() -> None:
    four = [run(n, n, kind=PeriodType.FOUR_WEEKS) for n in range(1, 14)]
    march = RunFilter(period=period_filter("2026-03"))
    assert [r.period_end for r in select_runs(four, march, [])[0]] == [3]  # 23 February .. 22 March
    january_2027 = RunFilter(period=period_filter("2027-01"))
    assert [r.period_end for r in select_runs(four, january_2027, [])[0]] == [13]  # ends 3 January 2027
    assert 2026 in january_2027.period.years()  # type: ignore[union-attr]
    by_number = RunFilter(period=period_filter("2026/13"))
    assert [r.period_end for r in select_runs(four, by_number, [])[0]] == [13]


@given(st.integers(2020, 2030), st.sampled_from(list(PeriodType)), st.integers(1, 12))
def test_every_run_is_in_exactly_the_month_its_period_ends_in(year: int, kind: PeriodType, month: int) -> None:
    count = {PeriodType.MONTH: 12, PeriodType.FOUR_WEEKS: 13}.get(kind, dt.date(year, 12, 28).isocalendar().week)
    runs = [run(n, n, year=year, kind=kind) for n in range(1, count + 1)]
    chosen = select_runs(runs, RunFilter(period=period_filter(f"{year}-{month:02d}")), [])[0]
    for candidate in runs:
        end = period_dates(year, candidate.period_end, kind)[1]
        assert (candidate in chosen) == ((end.year, end.month) == (year, month))


def test_years_listed() -> None:
    today = dt.date(2026, 12, 1)
    assert years_to_list(RUN_DRIVEN, [], today) == [2025, 2026]
    assert years_to_list(RUN_DRIVEN, [booked(run(1, 1, year=2025))], today) == [2025, 2026]
    assert years_to_list(RUN_DRIVEN, [booked(run(1, 1))], today) == [2026]  # a run of this year is booked
    assert years_to_list(RunFilter(period=range_filter("2025/12", "2026/02")), [], today) == [2025, 2026]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2026-13", "is not a month as YYYY-MM"), ("2026/54", "neither a month"), ("March", "neither a month")],
)
def test_a_bad_period_says_what_is_expected(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        period_filter(text)


def test_a_range_of_mixed_forms_or_reversed_is_refused() -> None:
    with pytest.raises(ValueError, match="mixes a month and a payroll period"):
        range_filter("2026-01", "2026/03")
    with pytest.raises(ValueError, match="ends before it starts"):
        range_filter("2026/05", "2026/03")
    with pytest.raises(ValueError, match="at most 36"):
        range_filter("2020-01", "2026-01")
