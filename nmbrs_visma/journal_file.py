"""The second journal source: an Nmbrs journal XML export given by hand, with the company and run it belongs to.

Read by the same core parser as the API's documents, so a file and an API run flow through the same checks.
What the file does not say is derived: the run's year and period are the latest period in the file (earlier
ones are corrections), and the run and company ids are deterministic, so posting the same export twice
meets the same posting keys and is not booked twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from nmbrs_visma.journals.models import PayrollRun, PeriodType
from nmbrs_visma.journals.nmbrs_xml import parse_journal_xml

MAX_FILE_BYTES = 200 * 1024 * 1024
_NAMESPACE = uuid.UUID("8b6f4c3e-2d1a-4f5e-9c7b-0a1e2d3c4b5a")


class JournalFileError(ValueError):
    """A journal file that cannot be used; names the file and what is wrong."""


@dataclass(frozen=True)
class JournalFile:
    """A parsed journal export and the payroll run it belongs to."""

    run: PayrollRun
    lines: pd.DataFrame
    source: str


def file_company_id(company_number: int) -> str:
    """Stand-in companyId for a company known only by number (stable across runs)."""
    return str(uuid.uuid5(_NAMESPACE, f"nmbrs-company/{company_number}"))


def file_run_id(company_number: int, year: int, period: int, run_number: int) -> str:
    """Stand-in payrollRunId: the same export of the same run always gets the same id (and posting keys)."""
    return str(uuid.uuid5(_NAMESPACE, f"nmbrs-file-run/{company_number}/{year}/{period}/{run_number}"))


@dataclass(frozen=True)
class RunInfo:
    """What the user knows of the run beyond the file; `year`/`period` default to the file's latest period."""

    run_number: int = 1
    year: int | None = None
    period: int | None = None
    run_id: str | None = None
    company_id: str | None = None
    company_name: str = ""
    locked: bool = True
    description: str = ""
    period_type: PeriodType = PeriodType.MONTH


def journal_run(lines: pd.DataFrame, *, source: str, company_number: int, info: RunInfo = RunInfo()) -> PayrollRun:
    """The `PayrollRun` a journal's lines belong to."""
    periods = sorted(set(lines["period_id"]))
    if not periods:
        raise JournalFileError(f"{source}: the journal holds no lines")
    latest = periods[-1]
    year, period = info.year, info.period
    if (year is None) != (period is None):
        raise JournalFileError(f"{source}: give both the run's year and period, or neither")
    if year is None or period is None:
        year, period = int(latest[:4]), int(latest[4:])
    elif latest > f"{year}{period:02d}":
        raise JournalFileError(
            f"{source}: the file holds period {latest}, later than the run's period {year}{period:02d}; "
            "a run only corrects earlier periods"
        )
    return PayrollRun(
        company_id=info.company_id or file_company_id(company_number),
        company_number=company_number,
        company_name=info.company_name,
        run_id=info.run_id or file_run_id(company_number, year, period, info.run_number),
        run_number=info.run_number,
        sequence=info.run_number,
        year=year,
        period_start=period,
        period_end=period,
        description=info.description or f"Nmbrs {source}",
        locked=info.locked,
        period_type=info.period_type,
    )


def journal_from_bytes(data: bytes, *, source: str, company_number: int, info: RunInfo = RunInfo()) -> JournalFile:
    """Parse an export held in memory (e.g. an upload)."""
    lines = parse_journal_xml(data, source=source)
    return JournalFile(
        run=journal_run(lines, source=source, company_number=company_number, info=info), lines=lines, source=source
    )


def read_journal_file(
    path: str | Path, *, company_number: int, info: RunInfo = RunInfo(), max_bytes: int = MAX_FILE_BYTES
) -> JournalFile:
    """Read an Nmbrs journal XML file of `company_number`."""
    file = Path(path)
    source = f"journal file {file.name} (company {company_number})"
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise JournalFileError(f"{source}: {size} bytes is more than the {max_bytes} allowed")
        data = file.read_bytes()
    except OSError as exc:
        raise JournalFileError(f"{source}: cannot read {file}: {exc.strerror or exc}") from None
    return journal_from_bytes(data, source=source, company_number=company_number, info=info)
