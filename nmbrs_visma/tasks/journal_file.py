"""A journal file given by hand (`--journal-file FILE --company N [--run N]`) as the flow's extraction result.

`nmbrs_visma.journal_file` reads it with the same parser as the API's documents; the file names its own run
(its latest period, the run number given), so the same export always meets the same posting keys as the same
run read from the API, whatever period argument came with it. A file that cannot be used becomes the
company's refusal, with the parser's message (file, transaction, line, field).
"""

from __future__ import annotations

from pathlib import Path

from nmbrs_visma.journal_file import JournalFileError, RunInfo, read_journal_file
from nmbrs_visma.journals.models import AdministrationMapping
from nmbrs_visma.journals.nmbrs_xml import JournalXmlError
from nmbrs_visma.payroll_period import PeriodFilter, period_filter
from nmbrs_visma.tasks.extract import CompanyJournals, RunJournal


def file_period(path: Path, company: int, given: str | None = None) -> PeriodFilter:
    """The payroll period of a file's run: its latest period (earlier ones are corrections), as a filter.
    `given`, the period asked for (a month or a payroll period), must agree: a `JournalFileError` names both
    when it does not."""
    run = read_journal_file(path, company_number=company).run
    asked = period_filter(given) if given is not None else None
    monthly = run.period_end <= 12 and (asked is None or asked.monthly)  # shown as the admin gave it
    own = PeriodFilter((run.year, run.period_end), (run.year, run.period_end), monthly=monthly)
    if asked is None:
        return own
    if asked.first != asked.last or asked.first != own.first:
        raise JournalFileError(
            f"journal file {path.name} (company {company}) is the run of period {own} (its latest period), not "
            f"of {asked}: give --period {own} or leave it out"
        )
    return own


def file_journals(
    path: Path, company: int, period: PeriodFilter | None, run_number: int, mapping: AdministrationMapping
) -> CompanyJournals:
    """The file's journal as the company's only run (of `period`, when given: `file_period`); the run pays per
    the mapping's `period_type`."""
    try:
        info = RunInfo(run_number=run_number, period_type=mapping.period_type)
        journal = read_journal_file(path, company_number=company, info=info)
        if period is not None and (journal.run.year, journal.run.period_end) != period.first:
            raise JournalFileError(
                f"{journal.source}: the file's run is of {journal.run.year}, period "
                f"{journal.run.period_end}, not of {period}"
            )
    except (JournalFileError, JournalXmlError) as exc:
        return CompanyJournals(company, error=f"company {company}: {exc}")
    return CompanyJournals(company, runs=[RunJournal(journal.run, journal.lines)])
