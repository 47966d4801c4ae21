"""A journal file given by hand (`--journal-file FILE --company N [--run N]`) as the flow's extraction result.

`nmbrs_visma.journal_file` reads it with the same parser as the API's documents; the file names its own run
(its latest period, the run number given), so the same export always meets the same posting keys as the same
run read from the API, whatever period argument came with it. A file that cannot be used becomes the
company's refusal, with the parser's message (file, transaction, line, field).
"""

from __future__ import annotations

from pathlib import Path

from nmbrs_visma.journal_file import JournalFileError, RunInfo, read_journal_file
from nmbrs_visma.journals.nmbrs_xml import JournalXmlError
from nmbrs_visma.payroll_period import PayrollPeriod, parse_period
from nmbrs_visma.tasks.extract import CompanyJournals, RunJournal


def file_period(path: Path, company: int, given: str | None = None) -> PayrollPeriod:
    """The payroll period of a file's run: its latest period (earlier ones are corrections). `given`, the period
    asked for, must agree: a `JournalFileError` names both when it does not."""
    run = read_journal_file(path, company_number=company).run
    period = PayrollPeriod(run.year, run.period_end)
    if given is not None and parse_period(given) != period:
        raise JournalFileError(
            f"journal file {path.name} (company {company}) is the run of {period} (its latest period), not of "
            f"{parse_period(given)}: give --period {period} or leave it out"
        )
    return period


def file_journals(path: Path, company: int, period: PayrollPeriod, run_number: int = 1) -> CompanyJournals:
    """The file's journal as the company's only run of `period` (which must be the file's own: `file_period`)."""
    try:
        journal = read_journal_file(path, company_number=company, info=RunInfo(run_number=run_number))
        if (journal.run.year, journal.run.period_end) != (period.year, period.month):
            raise JournalFileError(
                f"{journal.source}: the file's run is of {journal.run.year}, period "
                f"{journal.run.period_end}, not of {period}"
            )
    except (JournalFileError, JournalXmlError) as exc:
        return CompanyJournals(company, error=f"company {company}: {exc}")
    return CompanyJournals(company, runs=[RunJournal(journal.run, journal.lines)])
