"""Eligibility and the plan of a company's runs: every refusal reason, or the transactions to post.

Pure (no Prefect, no I/O): the core checks and builds, this module only turns their answers into status rows
and `Posting`s. A payroll period with any refused run of the company posts none of its runs, so a payroll
period is never half booked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from nmbrs_visma.journals.build import PlannedTransaction, RunContext, RunPlan, build_many, plan_run, with_run_id
from nmbrs_visma.journals.keys import mapping_administration_id
from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference, PayrollRun, Refusal
from nmbrs_visma.journals.split import payroll_label
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.tasks.extract import CompanyJournals
from nmbrs_visma.tasks.posting import Posting

TEST_COMPANY = "test_company"  # the refusal code of a test company (journals.checks)


@dataclass
class CompanyPlan:
    rows: list[StatusRow] = field(default_factory=list)  # refused / no run
    postings: list[Posting] = field(default_factory=list)


def refusal_text(refusals: Sequence[Refusal]) -> str:
    """Every reason, once each, in the order found."""
    seen: dict[str, None] = {}
    for refusal in refusals:
        seen.setdefault(refusal.message, None)
    return "; ".join(seen)


def refused_row(
    company: int,
    refusals: Sequence[Refusal],
    *,
    period: str = "",
    company_name: str = "",
    administration: str = "",
    reference: str = "",
    status: Status = Status.REFUSED,
    run_period: str = "",
) -> StatusRow:
    """A row of what is not posted and why; a test company and nothing else is `skipped` (reported, no alarm:
    a blocked debtor alongside it stays a refusal)."""
    codes = tuple(dict.fromkeys(refusal.code for refusal in refusals))
    if status is Status.REFUSED and codes == (TEST_COMPANY,):
        status = Status.SKIPPED
    return StatusRow(
        company=company,
        company_name=company_name,
        administration=administration,
        period=period,
        reference=reference,
        status=status,
        reason=refusal_text(refusals),
        codes=codes,
        run_period=run_period,
    )


def plan_or_fail(
    journals: CompanyJournals, mapping: AdministrationMapping, reference: AdministrationReference
) -> CompanyPlan:
    """`plan_company`, with a bug or a bad frame turned into the company's failed row (others go on)."""
    try:
        return plan_company(journals, mapping, reference)
    except Exception as exc:
        reason = f"preparing the journals of company {journals.company} failed: {type(exc).__name__}: {exc}"
        return CompanyPlan(rows=[StatusRow(company=journals.company, status=Status.FAILED, reason=reason)])


def plan_company(
    journals: CompanyJournals, mapping: AdministrationMapping, reference: AdministrationReference
) -> CompanyPlan:
    """Check every run of the company; build a payroll period's transactions only when all its runs pass."""
    plans = {run.run_id: plan_run(lines, run, mapping, reference) for run, lines in _readable_runs(journals)}
    return _company_plan(journals, mapping, reference, plans)


@dataclass(frozen=True)
class CompanyRead:
    """A company's period as read, ready to plan: its journals, its mapping and its tenant's reference."""

    journals: CompanyJournals
    mapping: AdministrationMapping
    reference: AdministrationReference


def plan_companies(companies: Sequence[CompanyRead]) -> list[CompanyPlan]:
    """`plan_company` of each company, with one `build_many` over all their runs: pandas' fixed cost per call
    outweighs the work on a run's few hundred lines, so a batch pays it once (docs/reliability.md). Raises what
    `build_many` raises, for the batch as a whole: plan the companies one by one then."""
    frames: list[pd.DataFrame] = []
    contexts: dict[str, RunContext] = {}
    for read in companies:
        for run, lines in _readable_runs(read.journals):
            if run.run_id in contexts:
                raise ValueError(f"run {run.run_id} appears twice in one batch (company {read.journals.company})")
            contexts[run.run_id] = RunContext(run, read.mapping, read.reference)
            frames.append(with_run_id(lines, run))
    plans = build_many(pd.concat(frames, ignore_index=True), contexts) if frames else {}
    return [_company_plan(read.journals, read.mapping, read.reference, plans) for read in companies]


def plan_read_companies(reads: Sequence[CompanyRead]) -> list[CompanyPlan]:
    """`plan_companies`; when the batch fails as a whole, each company alone (`plan_or_fail`), so a failure
    becomes its own company's row and the others are planned as usual."""
    try:
        return plan_companies(reads)
    except Exception:
        return [plan_or_fail(read.journals, read.mapping, read.reference) for read in reads]


def _readable_runs(journals: CompanyJournals) -> list[tuple[PayrollRun, pd.DataFrame]]:
    """The runs whose journal could be read, with their lines (none when the source as a whole could not)."""
    if journals.error is not None:
        return []
    return [(journal.run, journal.lines) for journal in journals.runs if journal.lines is not None]


def run_period(run: PayrollRun) -> str:
    """The run's (last) payroll period as `YYYYPP`, the period its rows name."""
    return f"{run.year:04d}{run.period_end:02d}"


def run_label(run: PayrollRun) -> str:
    """The run's (last) payroll period as a person writes it: 2026-03 for a month, 2026/13 for four weeks."""
    return payroll_label(run_period(run), run.period_type)


def _company_plan(
    journals: CompanyJournals,
    mapping: AdministrationMapping,
    reference: AdministrationReference,
    plans: Mapping[str, RunPlan],
) -> CompanyPlan:
    """The company's rows or postings from its runs' plans (`plans` holds at least every readable run's). A
    payroll period with a refused run posts none of its runs, so a period is never half booked."""
    administration = mapping_administration_id(mapping, reference)
    name = journals.company_name
    if journals.error is not None:
        invalid = Refusal(code="invalid_journal", company=journals.company, message=journals.error)
        return CompanyPlan(rows=[refused_row(journals.company, [invalid], administration=administration)])
    refused: dict[str, list[Refusal]] = {}
    for journal in journals.runs:
        run = journal.run
        if journal.lines is None:
            refused[run.run_id] = [_invalid(run, journal.error or "journal could not be read")]
        elif plans[run.run_id].refused:
            refused[run.run_id] = list(plans[run.run_id].refusals)
    blocked = {run_period(j.run) for j in journals.runs if j.run.run_id in refused}
    plan = CompanyPlan()
    for journal in journals.runs:
        run = journal.run
        if run_period(run) not in blocked:
            plan.postings.extend(_posting(journals, mapping, run, t) for t in plans[run.run_id].transactions)
            continue
        reasons = refused.get(run.run_id) or [
            Refusal(
                code="invalid_journal",
                company=journals.company,
                message=f"run {run.reference} not sent: another run of company {journals.company} in the same "
                "payroll period was refused",
            )
        ]
        plan.rows.append(
            refused_row(
                journals.company,
                reasons,
                period=run_period(run),
                company_name=name,
                administration=administration,
                reference=run.reference,
                run_period=run_label(run),
            )
        )
    return plan


def _posting(
    journals: CompanyJournals, mapping: AdministrationMapping, run: PayrollRun, transaction: PlannedTransaction
) -> Posting:
    return Posting(
        key=transaction.posting_key,
        fingerprint=transaction.fingerprint,
        company=journals.company,
        company_name=journals.company_name,
        run_id=run.run_id,
        reference=run.reference,
        run_period=run_label(run),
        administration=transaction.administration_id,
        payroll_period=transaction.payroll_period,
        period_id=transaction.financial_period,
        lines=transaction.line_count,
        debit=transaction.debit,
        credit=transaction.credit,
        payload=transaction.payload,
        release=mapping.release,
        note=transaction.note,
    )


def _invalid(run: PayrollRun, error: str) -> Refusal:
    return Refusal(
        code="invalid_journal",
        company=run.company_number,
        message=f"company {run.company_number} run {run.reference}: journal not readable: {error}",
    )
