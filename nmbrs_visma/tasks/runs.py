"""Which payroll runs of a company a pass posts: every locked run not completely booked yet, or those a filter
names.

Run-driven (no filter): the runs of the current payroll year, and of the year before until the company's first
run of the current year is booked (by then the last runs of the old year were locked: Nmbrs runs a company's
periods in order; an older run still to post is given by period or run). A run the posting ledger records as
completely booked is not read again, so a day with nothing new costs one runs listing per company. With a
period or run filter every matching locked run is read and posted, and what was sent before is reported
"already sent" by the ledger. An unlocked run is waiting, not refused: it is posted by the first pass after
it is locked.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nmbrs_visma.journals.models import PayrollRun, PeriodType
from nmbrs_visma.payroll_period import PeriodFilter
from nmbrs_visma.posting_ledger import CompletedRun

if TYPE_CHECKING:
    from nmbrs_visma.clients.nmbrs import NmbrsClient, NmbrsCompany


@dataclass(frozen=True)
class RunFilter:
    """What a pass posts: a period (range), one run (its Nmbrs id or its reference such as `NM2603R1`), or, with
    neither, every locked run not booked yet."""

    period: PeriodFilter | None = None
    run: str | None = None

    @property
    def run_driven(self) -> bool:
        return self.period is None and self.run is None

    def __str__(self) -> str:
        parts = [str(self.period)] if self.period else []
        parts += [f"run {self.run}"] if self.run else []
        return " ".join(parts) or "every locked run not yet sent"

    def matches(self, run: PayrollRun) -> bool:
        wanted = self.run.strip().casefold() if self.run is not None else None
        if wanted is not None and wanted not in {run.run_id.casefold(), run.reference.casefold()}:
            return False
        return self.period is None or self.period.matches(run)


@dataclass
class CompanyRuns:
    """A company's runs for this pass: to post, and waiting to be locked."""

    todo: list[PayrollRun] = field(default_factory=list)
    waiting: list[PayrollRun] = field(default_factory=list)


def with_sequence(runs: Iterable[PayrollRun]) -> list[PayrollRun]:
    """Each run with its place among the runs of its (year, last period), in run-number order: Nmbrs numbers
    runs through the year, a journal file names its run within the period, the posting key uses the place."""
    by_period: dict[tuple[int, int], list[PayrollRun]] = defaultdict(list)
    for run in runs:
        by_period[(run.year, run.period_end)].append(run)
    placed = []
    for group in by_period.values():
        for place, run in enumerate(sorted(group, key=lambda r: r.run_number), start=1):
            placed.append(run.model_copy(update={"sequence": place}))
    return sorted(placed, key=lambda r: (r.year, r.period_end, r.sequence))


def years_to_list(run_filter: RunFilter, completed: Sequence[CompletedRun], today: dt.date) -> list[int]:
    """The payroll years whose runs are listed (see the module docstring)."""
    if run_filter.period is not None:
        return run_filter.period.years()
    if any(run.year == today.year for run in completed):
        return [today.year]
    return [today.year - 1, today.year]


def select_runs(
    runs: Sequence[PayrollRun], run_filter: RunFilter, completed: Sequence[CompletedRun], *, skip_booked: bool = True
) -> tuple[list[PayrollRun], list[PayrollRun]]:
    """(to post, waiting): the filter's runs, locked or not; run-driven (and `skip_booked`), those not
    completely booked yet."""
    booked = {run.run_id for run in completed}
    chosen = [run for run in with_sequence(runs) if run_filter.matches(run)]
    if run_filter.run_driven and skip_booked:
        chosen = [run for run in chosen if run.run_id not in booked]
    return [run for run in chosen if run.locked], [run for run in chosen if not run.locked]


def find_runs(
    client: NmbrsClient,
    company: NmbrsCompany,
    run_filter: RunFilter,
    completed: Sequence[CompletedRun],
    today: dt.date,
    *,
    skip_booked: bool = True,
) -> CompanyRuns:
    """The company's runs for this pass, read from Nmbrs: its period type (`GET /period`, unless the ledger
    knows it from a run booked before) and the runs listing of each year to list. `skip_booked` False (reposting
    changed journals) reads booked runs again."""
    known = next((PeriodType(run.period_type) for run in completed), None)
    period_type = known or client.company_period(company.company_id).period_type
    listed: list[PayrollRun] = []
    for year in years_to_list(run_filter, completed, today):
        listed.extend(client.runs(company, year, period_type=period_type))
    todo, waiting = select_runs(listed, run_filter, completed, skip_booked=skip_booked)
    return CompanyRuns(todo, waiting)
