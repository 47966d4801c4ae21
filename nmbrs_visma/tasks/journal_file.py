"""A journal file given by hand (`--journal-file FILE --company N`) as the flow's extraction result.

`nmbrs_visma.journal_file` reads it with the same parser as the API's documents and derives a deterministic
run, so posting the same export twice meets the same posting keys. A file that cannot be used becomes the
company's refusal, with the parser's message (file, transaction, line, field).
"""

from __future__ import annotations

from pathlib import Path

from nmbrs_visma.journal_file import JournalFileError, RunInfo, read_journal_file
from nmbrs_visma.journals.nmbrs_xml import JournalXmlError
from nmbrs_visma.payroll_period import PayrollPeriod
from nmbrs_visma.tasks.extract import CompanyJournals, RunJournal


def file_period(path: Path, company: int) -> PayrollPeriod:
    """The payroll period a file belongs to when none is given: its latest period (earlier ones are corrections)."""
    run = read_journal_file(path, company_number=company).run
    return PayrollPeriod(run.year, run.period_end)


def file_journals(path: Path, company: int, period: PayrollPeriod) -> CompanyJournals:
    """The file's journal as the company's only run of `period`."""
    try:
        journal = read_journal_file(path, company_number=company, info=RunInfo(year=period.year, period=period.month))
    except (JournalFileError, JournalXmlError) as exc:
        return CompanyJournals(company, error=f"company {company}: {exc}")
    return CompanyJournals(company, runs=[RunJournal(journal.run, journal.lines)])
