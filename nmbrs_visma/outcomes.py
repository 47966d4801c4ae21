"""What `nmbrs-visma status` shows: the latest outcome of every run a pass saw, recorded in the posting ledger.

Why: the postings table knows only what was (about to be) sent; a payroll admin also asks what was refused,
what failed and what is waiting, per run, and finds a run by its payroll period even when it was booked in
another financial period. So at the end of every real pass (`record_pass`, from `run_pass`; dry runs are not
recorded) its rows go to the ledger's outcomes table in one write, replacing what an earlier pass recorded
for the same runs. `status_lines` reads them back with filters, and adds the postings the outcomes do not
cover (sent before this table existed, or by a pass that stopped before it recorded its outcomes): per run,
the newer of the two accounts wins.

Prefect-free: the flow hands in its rows and pass; the command line asks with a `StatusQuery`.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nmbrs_visma.journals.calendar import period_dates
from nmbrs_visma.journals.models import AdministrationMapping, PeriodType
from nmbrs_visma.payroll_period import PeriodFilter, period_filter
from nmbrs_visma.posting_ledger import (
    CompletedRun,
    PostingEntry,
    PostingLedger,
    PostingState,
    RunOutcome,
)
from nmbrs_visma.results import Status, StatusRow

if TYPE_CHECKING:
    from nmbrs_visma.flows.administrations import Pass

logger = logging.getLogger(__name__)

_MONTH_LABEL = re.compile(r"^(\d{4})-(\d{2})$")
_PAYROLL_LABEL = re.compile(r"^(\d{4})/(\d{2})$")
_REFERENCE = re.compile(r"^NM(\d{2})(\d{2})R\d+$")  # PayrollRun.reference: NM<yy><period>R<place>
_BOOKED = re.compile(r"^\d{6}$")


# -- recording ---------------------------------------------------------------------------------------------


def run_month(run_period: str, period_type: PeriodType | None) -> str:
    """`YYYY-MM` the run's last payroll period ends in: the label itself for a month, by the calendar of the
    company's period type for four weeks and weeks; empty when that type is not known."""
    if _MONTH_LABEL.match(run_period):
        return run_period
    match = _PAYROLL_LABEL.match(run_period)
    if match is None or period_type is None or period_type is PeriodType.MONTH:
        return ""
    try:
        end = period_dates(int(match.group(1)), int(match.group(2)), period_type)[1]
    except ValueError:
        return ""
    return f"{end.year:04d}-{end.month:02d}"


def period_types(
    completed: Mapping[int, Sequence[CompletedRun]], mappings: Mapping[int, AdministrationMapping]
) -> dict[int, PeriodType]:
    """Each company's period type as far as known: from the runs the ledger recorded as booked (read from
    Nmbrs), else a journal file's mapping when it says other than month."""
    known = {company: PeriodType(runs[0].period_type) for company, runs in completed.items() if runs}
    for company, mapping in mappings.items():
        if company not in known and mapping.period_type is not PeriodType.MONTH:
            known[company] = mapping.period_type
    return known


def outcome_of(row: StatusRow, types: Mapping[int, PeriodType], names: Mapping[int, str]) -> RunOutcome:
    """A status row as the ledger records it (a row with lines is a transaction: its period is booked)."""
    return RunOutcome(
        company=row.company,
        company_name=row.company_name or names.get(row.company, ""),
        reference=row.reference,
        administration=row.administration,
        period=row.period,
        run_period=row.run_period,
        run_month=run_month(row.run_period, types.get(row.company)),
        booked_period=row.period if row.lines else "",
        status=row.status.value,
        reason=row.reason,
        codes=row.codes,
        lines=row.lines,
        debit=row.debit,
        credit=row.credit,
        batch_number=row.batch_number,
    )


def outcomes_of(
    rows: Iterable[StatusRow], types: Mapping[int, PeriodType], flow_run_id: str | None = None
) -> list[RunOutcome]:
    """The rows worth recording: every row but a dry run's and `no run` (nothing new: not a run's outcome, but it
    still replaces a company-level failure recorded before, as a row of its own)."""
    rows = [row for row in rows if row.status is not Status.DRY_RUN]
    names = {row.company: row.company_name for row in rows if row.company_name}
    return [outcome_of(row, types, names).model_copy(update={"flow_run_id": flow_run_id}) for row in rows]


def record_pass(ledger: PostingLedger, rows: Sequence[StatusRow], work: Pass, *, dry_run: bool) -> None:
    """Record a real pass's rows as the latest outcomes of its runs (one write). Never fails the run: a ledger
    out of reach (or anything else) is a warning; `status` then shows the postings the ledger holds."""
    if dry_run or not rows:
        return
    try:
        types = period_types(work.completed, work.selection.mappings)
        unknown = sorted({row.company for row in rows if "/" in row.run_period} - set(types))
        if unknown:  # a non-monthly company first booked by this very pass: its runs are recorded by now
            types.update(period_types(ledger.completed_runs(unknown), {}))
        ledger.record_outcomes(outcomes_of(rows, types, work.flow_run_id))
    except Exception as exc:
        logger.warning("the outcomes of this pass were not recorded for `nmbrs-visma status`: %s", exc)


# -- reading -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusQuery:
    """What `status` shows: runs of a payroll period (a month, or YYYY/NN) or a run by reference, transactions
    booked in a financial period, some companies; all combined."""

    period: PeriodFilter | None = None
    booked: str | None = None
    run: str | None = None
    companies: tuple[int, ...] = ()

    @classmethod
    def parse(
        cls,
        *,
        period: str | None = None,
        booked: str | None = None,
        run: str | None = None,
        companies: Sequence[int] | None = None,
    ) -> StatusQuery:
        """From the command line's options; a malformed one is a `ValueError` saying what is expected."""
        booked = booked.strip() if booked else None
        if booked is not None and not _BOOKED.match(booked):
            raise ValueError(
                f"--booked {booked!r} is not a financial period as Visma.net numbers it: YYYYPP (for example 202603)"
            )
        return cls(
            period=period_filter(period) if period else None,
            booked=booked,
            run=run.strip().upper() if run else None,
            companies=tuple(sorted(set(companies or ()))),
        )

    @property
    def on_runs(self) -> bool:
        return self.period is not None or self.booked is not None or self.run is not None

    def __str__(self) -> str:
        parts = [f"payroll period {self.period}"] if self.period else []
        parts += [f"run {self.run}"] if self.run else []
        parts += [f"booked in {self.booked}"] if self.booked else []
        if self.companies:
            parts.append("company " + ", ".join(str(company) for company in self.companies))
        return ", ".join(parts)


@dataclass(frozen=True)
class StatusLine:
    """A row of `status`, with when and by which flow run it was recorded (none for a posting shown from the
    postings table)."""

    row: StatusRow
    recorded_at: str = ""
    flow_run_id: str | None = None


def _row(outcome: RunOutcome) -> StatusRow:
    try:
        status = Status(outcome.status)
    except ValueError:  # a status this version does not know (written by a newer one): shown as a failure
        status = Status.FAILED
    return StatusRow(
        company=outcome.company,
        company_name=outcome.company_name,
        administration=outcome.administration,
        period=outcome.period,
        reference=outcome.reference,
        lines=outcome.lines,
        debit=outcome.debit,
        credit=outcome.credit,
        batch_number=outcome.batch_number,
        status=status,
        reason=outcome.reason,
        codes=outcome.codes,
        run_period=outcome.run_period,
    )


def entry_row(entry: PostingEntry) -> StatusRow:
    """A posting of the postings table as a status row: what `status` shows of a run whose outcome is not
    recorded, or older than its postings (a pass stopped before it recorded its own)."""
    what = "reversal of batch " + entry.reverses if entry.reverses else ""
    if entry.state is PostingState.SENT:
        status, reason = Status.SENT, ("released" if entry.released else entry.message)
    elif entry.state is PostingState.REVERSED:
        status, reason = Status.SENT, entry.message
    elif entry.state is PostingState.INTENT:
        status, reason = Status.PENDING, "outcome unknown (answer lost); the next run looks it up before posting"
    else:
        status, reason = Status.FAILED, entry.message
    return StatusRow(
        company=entry.company,
        administration=entry.administration,
        period=entry.period_id,
        reference=entry.reference,
        lines=entry.lines,
        debit=entry.debit,
        credit=entry.credit,
        batch_number=entry.batch_number,
        status=status,
        reason="; ".join(part for part in (what, reason) if part),
    )


def _entry_matches(entry: PostingEntry, query: StatusQuery) -> bool:
    """The query on a posting: its reference names its run's year and last period (the period type is not
    recorded with a posting: a month is taken as the period of that number)."""
    if query.companies and entry.company not in query.companies:
        return False
    if query.booked is not None and entry.period_id != query.booked:
        return False
    if query.run is not None and entry.reference.upper() != query.run.upper():
        return False
    if query.period is not None:
        match = _REFERENCE.match(entry.reference)
        if match is None:
            return False
        run = (2000 + int(match.group(1)), int(match.group(2)))
        return query.period.first <= run <= query.period.last
    return True


def _outcomes(ledger: PostingLedger, query: StatusQuery) -> list[RunOutcome]:
    period = query.period
    found = ledger.outcomes(
        companies=query.companies or None,
        reference=query.run,
        payroll=(period.first, period.last) if period is not None and not period.monthly else None,
        months=(f"{period.first[0]:04d}-{period.first[1]:02d}", f"{period.last[0]:04d}-{period.last[1]:02d}")
        if period is not None and period.monthly
        else None,
        booked_period=query.booked,
    )
    # a company-level row (no run) is about the company as a whole: shown unless the query names runs
    return [outcome for outcome in found if outcome.reference or not query.on_runs]


def status_lines(query: StatusQuery, ledger: PostingLedger | None = None) -> list[StatusLine]:
    """The latest outcome of every run the query selects, with company names; `no run` rows left out."""
    ledger = ledger or PostingLedger()
    outcomes = _outcomes(ledger, query)
    entries = [entry for entry in ledger.all_entries() if _entry_matches(entry, query)]
    recorded: dict[tuple[int, str], float] = {}
    for outcome in outcomes:
        assert outcome.recorded_at is not None
        run = (outcome.company, outcome.reference)
        recorded[run] = max(recorded.get(run, 0.0), outcome.recorded_at.timestamp())
    stale = {  # runs posted again after their outcome was recorded (a pass stopped before it recorded its own)
        (entry.company, entry.reference)
        for entry in entries
        if (entry.company, entry.reference) in recorded
        and entry.updated_at.timestamp() > recorded[(entry.company, entry.reference)]
    }
    # a posting is shown when no outcome of its run is recorded, or the run's outcome is older than its postings
    shown = [entry for entry in entries if (run := (entry.company, entry.reference)) not in recorded or run in stale]
    names = _names(ledger, outcomes, {entry.company for entry in shown})
    lines = [
        StatusLine(
            _row(outcome).model_copy(update={"company_name": outcome.company_name or names[outcome.company]}),
            outcome.recorded_at.isoformat() if outcome.recorded_at else "",
            outcome.flow_run_id,
        )
        for outcome in outcomes
        if (outcome.company, outcome.reference) not in stale and outcome.status != Status.NO_RUN.value
    ]
    lines += [
        StatusLine(
            entry_row(entry).model_copy(update={"company_name": names[entry.company]}),
            entry.updated_at.isoformat(),
            entry.flow_run_id,
        )
        for entry in shown
    ]
    return sorted(
        lines, key=lambda line: (line.row.company, line.row.reference, line.row.administration, line.row.period)
    )


def _names(ledger: PostingLedger, outcomes: Sequence[RunOutcome], companies: Iterable[int]) -> dict[int, str]:
    """Company names as the outcomes recorded them (read for the companies of postings the query found alone)."""
    names: dict[int, str] = defaultdict(str)
    for outcome in outcomes:
        names[outcome.company] = names[outcome.company] or outcome.company_name
    missing = sorted(set(companies) - {company for company, name in names.items() if name})
    for outcome in ledger.outcomes(companies=missing) if missing else []:
        names[outcome.company] = names[outcome.company] or outcome.company_name
    return names
