"""Prepare a company's period in two steps: read it (its tenant's reference, its journals from Nmbrs), then
plan it (checked and built), several companies at once when several are read.

Runs in the flow's own reading threads (flows/period.py), not as a Prefect task. Why: it only reads and
computes, so a failure costs nothing to redo and is reported as the company's row with its reason; the reads
are retried by the HTTP client; and a task run per company per period cost about 15 ms of CPU (the engine
and the Prefect server's records of it), the largest single cost of a run of hundreds of companies, for a row
in the UI that the status artifacts already give. Posting, which changes the ledger, stays a task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference
from nmbrs_visma.payroll_period import PayrollPeriod
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.tasks.extract import CompanyJournals, extract_journals, mapping_journal_kind
from nmbrs_visma.tasks.plan import CompanyPlan, CompanyRead, plan_companies, plan_company
from nmbrs_visma.tasks.reference import References, reference_key

if TYPE_CHECKING:
    from nmbrs_visma.clients.nmbrs import NmbrsClient, NmbrsCompany
    from nmbrs_visma.clients.visma_net import VismaNetClient


@dataclass(frozen=True)
class CompanySources:
    """Where a company's preparation reads from: its Nmbrs account's client, its Visma.net account's client and
    tenant, and the run's shared reference data."""

    nmbrs: NmbrsClient
    visma: VismaNetClient
    tenant_id: str
    references: References


def plan_or_fail(
    journals: CompanyJournals, mapping: AdministrationMapping, reference: AdministrationReference, period: PayrollPeriod
) -> CompanyPlan:
    """`plan_company`, with a bug or a bad frame turned into the company's failed row (others go on)."""
    try:
        return plan_company(journals, mapping, reference, period)
    except Exception as exc:
        reason = f"preparing the journals of company {journals.company} failed: {type(exc).__name__}: {exc}"
        return CompanyPlan(
            rows=[StatusRow(company=journals.company, period=period.period_id, status=Status.FAILED, reason=reason)]
        )


def read_company(
    company_number: int,
    company: NmbrsCompany,
    period: PayrollPeriod,
    mapping: AdministrationMapping,
    sources: CompanySources,
) -> CompanyRead:
    """The company's tenant reference (read once per run) and its runs of `period` with their journals from
    Nmbrs. `ReferenceUnavailable` when the tenant's reference cannot be read; other exceptions are a failed read
    from Nmbrs."""
    reference = sources.references.get(reference_key(mapping), sources.visma, sources.tenant_id)
    journals = extract_journals(company_number, company, sources.nmbrs, period, mapping_journal_kind(mapping))
    return CompanyRead(journals, mapping, reference)


def plan_read_companies(reads: Sequence[CompanyRead], period: PayrollPeriod) -> list[CompanyPlan]:
    """`plan_companies` over the companies read; when the batch fails, each company alone (`plan_or_fail`), so a
    failure becomes its own company's row and the others are planned as usual."""
    try:
        return plan_companies(reads, period)
    except Exception:
        return [plan_or_fail(read.journals, read.mapping, read.reference, period) for read in reads]
