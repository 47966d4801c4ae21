"""Extract the journals of a company's runs from Nmbrs (or from a journal file given by hand).

Which journal the API is asked for follows the mapping: with cost centers and cost units
`journalscostcenterunit`, with cost centers only `journalscostcenter`, else `journals` (a mapping with cost
units only also needs `journalscostcenterunit`: it is the only kind that carries them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from nmbrs_visma.journals.models import AdministrationMapping, PayrollRun
from nmbrs_visma.journals.nmbrs_xml import JournalXmlError
from nmbrs_visma.settings import DEFAULT_DOCUMENT_WAIT

if TYPE_CHECKING:
    from nmbrs_visma.clients.nmbrs import NmbrsClient, NmbrsCompany


def mapping_journal_kind(mapping: AdministrationMapping) -> str:
    """The journal export that carries the dimensions the mapping books."""
    from nmbrs_visma.clients.nmbrs import journal_kind

    return journal_kind(cost_center=mapping.cost_center.enabled, cost_unit=mapping.cost_unit.enabled)


@dataclass(frozen=True)
class RunJournal:
    """One payroll run and its journal lines (a line frame), or why its journal could not be read."""

    run: PayrollRun
    lines: pd.DataFrame | None = None
    error: str | None = None


@dataclass(frozen=True)
class CompanyJournals:
    """What extraction found for one company: its runs to post with their journals."""

    company: int
    company_name: str = ""
    runs: list[RunJournal] = field(default_factory=list)
    error: str | None = None  # the source as a whole could not be read (a journal file)


@task(name="find-nmbrs-companies", task_run_name="find-nmbrs-companies-{account}", cache_policy=NO_CACHE, retries=1)
def find_nmbrs_companies(account: str, client: NmbrsClient) -> dict[int, NmbrsCompany]:
    """Every company the account reaches, by company number (debtors first: the global list refuses
    multi-debtor consent)."""
    found: dict[int, NmbrsCompany] = {}
    for debtor in client.debtors():
        for company in client.companies(debtor.debtor_id):
            found[company.number] = company
    return found


def extract_journals(
    company_number: int,
    company: NmbrsCompany,
    client: NmbrsClient,
    runs: Sequence[PayrollRun],
    kind: str,
    document_wait: float = DEFAULT_DOCUMENT_WAIT,
) -> CompanyJournals:
    """The journals of the company's runs to post (all reads: safe to retry); a journal that cannot be parsed
    is that run's error, the others are read on. `document_wait`: seconds Nmbrs may take per journal document."""
    journals = []
    for run in runs:
        try:
            journals.append(RunJournal(run, client.journals(run, kind=kind, max_wait=document_wait)))
        except JournalXmlError as exc:
            journals.append(RunJournal(run, error=str(exc)))
    return CompanyJournals(company_number, company.name, journals)
