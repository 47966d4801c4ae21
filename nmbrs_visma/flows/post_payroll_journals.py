"""The `post-payroll-journals` flow: a payroll month from Nmbrs into the Visma.net general ledger, exactly once.

It reads like the process: load the mappings and accounts -> refresh tokens -> read each Visma.net tenant's
reference data once -> per company: find the run(s) of the period and extract their journals -> check
eligibility (every reason) -> split by period and build one transaction per (administration, period) ->
post per administration, concurrently within a limit -> release when configured -> record and show status.

`backfill.py` runs the same stages for a range of periods; `commands.py` runs both from the command line.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from nmbrs_visma.blocks.mapping import LoadedMappings, load_mappings
from nmbrs_visma.blocks.nmbrs import NmbrsAccount
from nmbrs_visma.blocks.visma_net import VismaNetAccount
from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference, Refusal
from nmbrs_visma.payroll_period import PayrollPeriod, resolve_period
from nmbrs_visma.posting_record import PostingRecord, PostingState
from nmbrs_visma.results import Status, StatusRow, sort_rows, summary
from nmbrs_visma.tasks.extract import CompanyJournals, extract_journals, find_nmbrs_companies, mapping_journal_kind
from nmbrs_visma.tasks.journal_file import file_journals, file_period
from nmbrs_visma.tasks.plan import plan_company, refused_row
from nmbrs_visma.tasks.posting import Posting, post_administration
from nmbrs_visma.tasks.reference import read_reference
from nmbrs_visma.tasks.report import PayloadFile, output_dir, publish_payloads, publish_results, write_payload
from nmbrs_visma.tasks.tokens import AccountNotAuthorised, System, TokenStatus, load_account, refresh_token

if TYPE_CHECKING:
    from nmbrs_visma.clients.nmbrs import NmbrsClient, NmbrsCompany
    from nmbrs_visma.clients.visma_net import VismaNetClient

logger = logging.getLogger(__name__)

MAX_WORKERS_ENV = "NMBRS_VISMA_MAX_WORKERS"


def max_workers() -> int:
    """Administrations posted (and companies extracted) at once; Visma.net rate limits are per tenant."""
    return max(1, int(os.environ.get(MAX_WORKERS_ENV, "8")))


# -- configuration ------------------------------------------------------------------------------------------


@dataclass
class Selection:
    """The mapped companies a run works on, and the rows of those it cannot (unmapped, mapped twice)."""

    mappings: dict[int, AdministrationMapping]
    nmbrs_accounts: dict[int, str]
    rows: list[StatusRow] = field(default_factory=list)


def select_companies(loaded: LoadedMappings, companies: Sequence[int] | None, period: PayrollPeriod) -> Selection:
    wanted = sorted(set(companies)) if companies else sorted(set(loaded.mappings) | set(loaded.duplicates))
    selection = Selection(mappings={}, nmbrs_accounts={})
    duplicates = {refusal.company: refusal for refusal in loaded.refusals()}
    for company in wanted:
        if company in duplicates:
            selection.rows.append(refused_row(company, [duplicates[company]], period=period))
        elif company not in loaded.mappings:
            unmapped = Refusal(
                code="unmapped_company",
                company=company,
                message=f"company {company} has no administration mapping (add it to the config and apply it)",
            )
            selection.rows.append(refused_row(company, [unmapped], period=period))
        else:
            selection.mappings[company] = loaded.mappings[company]
            selection.nmbrs_accounts[company] = loaded.nmbrs_accounts.get(company, "default")
    return selection


# -- connections: tokens, clients, reference data --------------------------------------------------------------


@dataclass
class Connections:
    """Clients and per-run reads, shared by every company of the run; `unavailable` says why an account is out."""

    visma: dict[str, VismaNetClient] = field(default_factory=dict)
    nmbrs: dict[str, NmbrsClient] = field(default_factory=dict)
    references: dict[tuple[str, str], AdministrationReference] = field(default_factory=dict)
    nmbrs_companies: dict[str, dict[int, NmbrsCompany]] = field(default_factory=dict)
    unavailable: dict[tuple[str, str], tuple[Status, Refusal]] = field(default_factory=dict)

    def close(self) -> None:
        for client in [*self.visma.values(), *self.nmbrs.values()]:
            try:
                client.close()
            except Exception as exc:  # closing is best effort
                logger.debug("closing a client failed: %s", exc)

    def problem(self, mapping: AdministrationMapping, nmbrs_account: str | None) -> tuple[Status, Refusal] | None:
        for key in (("visma", mapping.visma_account), ("reference", f"{mapping.visma_account}/{_dimension(mapping)}")):
            if key in self.unavailable:
                return self.unavailable[key]
        if nmbrs_account is not None:
            for key in (("nmbrs", nmbrs_account), ("nmbrs-companies", nmbrs_account)):
                if key in self.unavailable:
                    return self.unavailable[key]
        return None


def _dimension(mapping: AdministrationMapping) -> str:
    return mapping.subaccount_dimension


def _failure(system: str, account: str, exc: BaseException) -> tuple[Status, Refusal]:
    if isinstance(exc, AccountNotAuthorised):
        return Status.REFUSED, exc.refusal()
    message = f"{system} account '{account}': {type(exc).__name__}: {exc}"
    return Status.FAILED, Refusal(code="not_authorised", message=message)


def connect_accounts(selection: Selection, *, use_nmbrs: bool) -> Connections:
    """Refresh every needed account's token (one refresh per account at a time), build the clients, read each
    tenant's reference data once and each Nmbrs account's company list once."""
    connections = Connections()
    visma_accounts = sorted({mapping.visma_account for mapping in selection.mappings.values()})
    nmbrs_accounts = sorted(set(selection.nmbrs_accounts.values())) if use_nmbrs else []
    tenants: dict[str, str] = {}
    refreshes: dict[tuple[System, str], PrefectFuture[TokenStatus]] = {}
    for name in visma_accounts:
        try:
            block = load_account(VismaNetAccount, name)
        except Exception as exc:
            connections.unavailable[("visma", name)] = _failure("visma", name, exc)
            continue
        if block.uses_refresh_token:
            refreshes[("visma", name)] = refresh_token.submit("visma", name)
        else:  # a service (client credentials) account: its client fetches a token on first use, no lock needed
            tenants[name] = block.tenant_id
            connections.visma[name] = block.get_client()
    refreshes |= {("nmbrs", name): refresh_token.submit("nmbrs", name) for name in nmbrs_accounts}
    for (system, name), future in refreshes.items():
        try:
            future.result()
            if system == "visma":
                block = VismaNetAccount.load(name, _sync=True)
                tenants[name] = block.tenant_id
                connections.visma[name] = block.get_client()
            else:
                connections.nmbrs[name] = NmbrsAccount.load(name, _sync=True).get_client()
        except Exception as exc:
            connections.unavailable[(system, name)] = _failure(system, name, exc)

    reads: dict[tuple[str, str], PrefectFuture[AdministrationReference]] = {}
    for mapping in selection.mappings.values():
        account, dimension = mapping.visma_account, _dimension(mapping)
        if account in connections.visma and (account, dimension) not in reads:
            reads[(account, dimension)] = read_reference.submit(
                account, connections.visma[account], tenants.get(account, ""), dimension
            )
    for (account, dimension), future in reads.items():
        try:
            connections.references[(account, dimension)] = future.result()
        except Exception as exc:
            connections.unavailable[("reference", f"{account}/{dimension}")] = (
                Status.FAILED,
                Refusal(
                    code="not_authorised",
                    message=f"Visma.net account '{account}': reading financial periods, accounts and "
                    f"dimension {dimension} failed: {exc}",
                ),
            )

    listings = {name: find_nmbrs_companies.submit(name, client) for name, client in connections.nmbrs.items()}
    for name, future in listings.items():
        try:
            connections.nmbrs_companies[name] = future.result()
        except Exception as exc:
            connections.unavailable[("nmbrs-companies", name)] = (
                Status.FAILED,
                Refusal(code="not_authorised", message=f"Nmbrs account '{name}': listing companies failed: {exc}"),
            )
    return connections


# -- one period ---------------------------------------------------------------------------------------------


def post_period(
    selection: Selection,
    connections: Connections,
    period: PayrollPeriod,
    *,
    record: PostingRecord,
    journal_file: Path | None = None,
    dry_run: bool = False,
    payload_dir: Path | None = None,
) -> tuple[list[StatusRow], list[PayloadFile]]:
    """Extract, check, build and post (or preview) one payroll period for the selected companies."""
    rows: list[StatusRow] = []
    extractions: dict[int, PrefectFuture[CompanyJournals]] = {}
    file_extractions: dict[int, CompanyJournals] = {}
    for company, mapping in sorted(selection.mappings.items()):
        nmbrs_account = None if journal_file else selection.nmbrs_accounts[company]
        problem = connections.problem(mapping, nmbrs_account)
        if problem is not None:
            status, refusal = problem
            rows.append(refused_row(company, [refusal], period=period, status=status))
            continue
        if journal_file is not None:
            file_extractions[company] = file_journals(journal_file, company, period)
            continue
        assert nmbrs_account is not None
        nmbrs_company = connections.nmbrs_companies[nmbrs_account].get(company)
        if nmbrs_company is None:
            missing = Refusal(
                code="unmapped_company",
                company=company,
                message=f"company {company} is not among the companies Nmbrs account '{nmbrs_account}' reaches",
            )
            rows.append(refused_row(company, [missing], period=period, status=Status.FAILED))
            continue
        extractions[company] = extract_journals.submit(
            company, nmbrs_company, connections.nmbrs[nmbrs_account], period, mapping_journal_kind(mapping)
        )

    postings: list[Posting] = []
    journals_by_company = dict(file_extractions)
    for company, future in extractions.items():
        try:
            journals_by_company[company] = future.result()
        except Exception as exc:
            reason = f"extracting the journals of company {company} from Nmbrs failed: {exc}"
            rows.append(StatusRow(company=company, period=period.period_id, status=Status.FAILED, reason=reason))
    for company, journals in sorted(journals_by_company.items()):
        mapping = selection.mappings[company]
        reference = connections.references[(mapping.visma_account, _dimension(mapping))]
        try:
            plan = plan_company(journals, mapping, reference, period)
        except Exception as exc:  # a bug or a bad frame must not take the other companies down
            reason = f"preparing the journals of company {company} failed: {type(exc).__name__}: {exc}"
            rows.append(StatusRow(company=company, period=period.period_id, status=Status.FAILED, reason=reason))
            continue
        rows.extend(plan.rows)
        postings.extend(plan.postings)

    if dry_run:
        preview_rows, files = preview(postings, record, payload_dir or output_dir())
        return rows + preview_rows, files
    return rows + post_all(postings, selection, connections, record), []


def preview(
    postings: Sequence[Posting], record: PostingRecord, directory: Path
) -> tuple[list[StatusRow], list[PayloadFile]]:
    """A dry run: write each payload to a file and report it; nothing is sent, nothing is looked up."""
    rows: list[StatusRow] = []
    files: list[PayloadFile] = []
    for posting in postings:
        entry = record.get(posting.key)
        if entry is not None and entry.state is PostingState.SENT:
            rows.append(posting.row(Status.ALREADY_SENT, batch_number=entry.batch_number))
            continue
        payload_file = write_payload(
            directory,
            company=posting.company,
            administration=posting.administration,
            period_id=posting.period_id,
            key=posting.key,
            payload=posting.payload,
        )
        files.append(payload_file)
        rows.append(posting.row(Status.DRY_RUN, reason=f"payload in {payload_file.path.name}"))
    return rows, files


def post_all(
    postings: Sequence[Posting], selection: Selection, connections: Connections, record: PostingRecord
) -> list[StatusRow]:
    """One task per administration, run concurrently by the flow's bounded thread pool."""
    accounts = {posting.administration: selection.mappings[posting.company].visma_account for posting in postings}
    by_administration: dict[str, list[Posting]] = defaultdict(list)
    for posting in postings:
        by_administration[posting.administration].append(posting)
    run_id = str(flow_run.get_id() or "") or None
    futures = {
        administration: post_administration.submit(
            administration, group, connections.visma[accounts[administration]], record, run_id
        )
        for administration, group in sorted(by_administration.items())
    }
    rows: list[StatusRow] = []
    for administration, future in futures.items():
        try:
            rows.extend(future.result())
        except Exception as exc:
            reason = f"posting to {administration} stopped: {type(exc).__name__}: {exc}; a re-run looks it up first"
            rows.extend(posting.row(Status.FAILED, reason=reason) for posting in by_administration[administration])
    return rows


# -- the flow -----------------------------------------------------------------------------------------------


def run_periods(
    periods: Sequence[PayrollPeriod],
    companies: Sequence[int] | None,
    *,
    journal_file: str | None,
    dry_run: bool,
    title: str,
    run_key: str,
) -> list[StatusRow]:
    """The stages shared by both flows: configuration and connections once, then each period in turn."""
    log = get_run_logger()
    path = Path(journal_file) if journal_file else None
    if path is not None and (not companies or len(set(companies)) != 1):
        raise ValueError("a journal file belongs to exactly one company: give exactly one company with it")
    if path is not None and len(periods) != 1:
        raise ValueError("a journal file is posted for one period, not a range")
    selection = select_companies(load_mappings(), companies, periods[0])
    record = PostingRecord()
    connections = connect_accounts(selection, use_nmbrs=path is None)
    rows: list[StatusRow] = []
    files: list[PayloadFile] = []
    payload_dir = output_dir() if dry_run else None
    try:
        for period in periods:
            period_rows, period_files = post_period(
                selection,
                connections,
                period,
                record=record,
                journal_file=path,
                dry_run=dry_run,
                payload_dir=payload_dir,
            )
            rows.extend(period_rows)
            files.extend(period_files)
    finally:
        connections.close()
    rows = sort_rows([*selection.rows, *rows])
    publish_results(rows, title=title, run_key=run_key, dry_run=dry_run)
    if dry_run:
        publish_payloads(files, title=title, run_key=run_key)
    log.info("%s: %s", title, summary(rows))
    for row in rows:
        if row.status in (Status.REFUSED, Status.FAILED):
            log.warning("company %s %s %s: %s: %s", row.company, row.administration, row.period, row.status, row.reason)
    return rows


@flow(
    name="post-payroll-journals",
    task_runner=ThreadPoolTaskRunner(max_workers=max_workers()),
    description="Post one payroll month's journals from Nmbrs to the Visma.net general ledger, exactly once.",
)
def post_payroll_journals(
    period: str | None = None,
    companies: list[int] | None = None,
    journal_file: str | None = None,
    dry_run: bool = False,
) -> list[StatusRow]:
    """Post the payroll journals of `period` (YYYY-MM; default the previous month in Europe/Amsterdam).

    companies: Nmbrs company numbers (default: every mapped company). journal_file: an Nmbrs journal XML file
    to post instead of reading the API (with exactly one company). dry_run: build and show the exact payloads,
    send nothing.
    """
    if journal_file and not period and companies:
        payroll_period = file_period(Path(journal_file), companies[0])
    else:
        payroll_period = resolve_period(period)
    return run_periods(
        [payroll_period],
        companies,
        journal_file=journal_file,
        dry_run=dry_run,
        title=f"Payroll journals {payroll_period}",
        run_key=f"payroll-journals-{payroll_period}",
    )
