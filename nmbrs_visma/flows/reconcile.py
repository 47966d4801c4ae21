"""The `reconcile-payroll-journals` flow: Nmbrs' journals against what Visma.net holds now, to the cent.

For a period or a payroll run (and some companies, or every mapped one), per company: the runs are found and
their journals extracted as `post` does (tasks/runs.py, tasks/extract.py), then planned and built by the core
(tasks/plan.py), so "expected" is exactly what `post` would send for them; the posting ledger says which
batches were sent for those runs; each batch is read back by its number (`GET /v2/journaltransaction/{number}`)
and the listing of its financial period shows the reversing batches Visma.net's Reverse action made of it. The
comparison itself is the pure `journals/reconcile.py`.

Reconciling compares content, not whether a journal could be posted today: the reference data is taken with
every period open and active and every account and segment value active, so a month closed since it was
posted (the usual moment to reconcile it) is reconciled like any other.

The run ends FAILED when anything differs (a message naming the transactions, for an alert), COMPLETED when
everything agrees; its table and markdown artifacts show every difference per company, run, period, batch,
account and subaccount. `nmbrs-visma reconcile` runs it in-process.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import quote
from pydantic import Field

from nmbrs_visma.blocks.mapping import load_mappings
from nmbrs_visma.clients.errors import NotFound
from nmbrs_visma.fan_out import at_once
from nmbrs_visma.flows.connections import Connections, Selection, connect_accounts, select_companies
from nmbrs_visma.flows.post_payroll_journals import CompaniesParameter, PeriodParameter, listed_result
from nmbrs_visma.flows.run_settings import SettingsTaskRunner, run_settings
from nmbrs_visma.journals.checks import check_company
from nmbrs_visma.journals.models import AdministrationReference
from nmbrs_visma.journals.reconcile import (
    BatchRef,
    Expected,
    ReadBack,
    TransactionCheck,
    Verdict,
    batches_to_read,
    differences,
    outcome_message,
    periods_to_list,
    reconcile,
    rows_of,
    sort_checks,
    summary,
)
from nmbrs_visma.payroll_period import period_filter, today
from nmbrs_visma.posting_ledger import CompletedRun, PostingEntry, PostingLedger
from nmbrs_visma.results import artifact_key
from nmbrs_visma.settings import Settings
from nmbrs_visma.tasks.extract import extract_journals, mapping_journal_kind
from nmbrs_visma.tasks.plan import CompanyRead, plan_read_companies, run_period
from nmbrs_visma.tasks.reference import ReferenceUnavailable, reference_key
from nmbrs_visma.tasks.runs import RunFilter, find_runs

if TYPE_CHECKING:
    from nmbrs_visma.clients.visma_net import VismaNetClient
    from nmbrs_visma.journals.models import PayrollRun

logger = logging.getLogger(__name__)

DEFAULT_PERIOD = "previous-month"  # what a reconciliation without a period or a run looks at
RECONCILE_TAGS = ("reconcile",)
RunParameter = Annotated[str | None, Field(json_schema_extra={"title": "Payroll run", "examples": ["NM2603R1"]})]


# -- what a run shares --------------------------------------------------------------------------------------


class Listings:
    """The reversing batches of each (Visma.net account, financial period), listed once per run and shared by
    the companies booking there: {batch reversed: [reversing batches]}, or why the listing failed."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._known: dict[tuple[str, str], dict[str, list[str]] | str] = {}

    def reversing(self, account: str, client: VismaNetClient, period_id: str) -> dict[str, list[str]] | str:
        key = (account, period_id)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._known:
                self._known[key] = self._list(client, period_id)
            return self._known[key]

    @staticmethod
    def _list(client: VismaNetClient, period_id: str) -> dict[str, list[str]] | str:
        try:
            summaries = client.list_journal_transactions(period_id)
        except Exception as exc:  # the period's transactions are reported unchecked, the others go on
            return f"listing period {period_id} failed: {exc}"
        found: dict[str, list[str]] = defaultdict(list)
        for summary_ in summaries:
            if summary_.reversing_entry and summary_.original_batch_number:
                found[summary_.original_batch_number].append(summary_.batch_number)
        return dict(found)


@dataclass
class Work:
    """What every company of one reconciliation shares: the companies, clients, the ledger's record, the filter."""

    selection: Selection
    connections: Connections
    run_filter: RunFilter
    today: dt.date
    recorded: dict[tuple[int, str], list[PostingEntry]]  # (company, run reference) -> its ledger entries
    completed: dict[int, list[CompletedRun]] = field(default_factory=dict)
    listings: Listings = field(default_factory=Listings)


def comparable(reference: AdministrationReference) -> AdministrationReference:
    """The reference with every period open and active and every account and segment value active: what a
    journal books does not depend on them, and a period closed since it was posted is reconciled all the same."""
    return reference.model_copy(
        update={
            "periods": {
                period_id: period.model_copy(update={"active": True, "closed_in_gl": False})
                for period_id, period in reference.periods.items()
            },
            "accounts": {n: account.model_copy(update={"active": True}) for n, account in reference.accounts.items()},
            "segments": tuple(
                segment.model_copy(update={"values": dict.fromkeys(segment.values, True)})
                for segment in reference.segments
            ),
        }
    )


# -- one company ------------------------------------------------------------------------------------------


def _note(company: int, verdict: Verdict, reason: str, **fields: Any) -> TransactionCheck:
    return TransactionCheck(company=company, verdict=verdict, reason=reason, **fields)


def _run_note(run: PayrollRun, name: str, verdict: Verdict, reason: str) -> TransactionCheck:
    return _note(
        run.company_number, verdict, reason, company_name=name, reference=run.reference, period=run_period(run)
    )


@task(name="reconcile-company", task_run_name="reconcile company {company}", cache_policy=NO_CACHE)
def reconcile_company(company: int, work: Work) -> list[TransactionCheck]:
    """Prefect task: one company's runs, what the pipeline would post for them, against the batches sent.
    Reads only (Nmbrs, the ledger's record, Visma.net), so it is safe to run again."""
    return company_checks(company, work)


def company_checks(company: int, work: Work) -> list[TransactionCheck]:
    """Every check of the company: its transactions, or why nothing could be (or needed to be) compared."""
    mapping = work.selection.mappings[company]
    nmbrs_account = work.selection.nmbrs_accounts.get(company)
    if nmbrs_account is None:
        reason = "posts journal files only (no Nmbrs account in its mapping): reconcile reads journals from Nmbrs"
        return [_note(company, Verdict.SKIPPED, reason)]
    problem = work.connections.problem(mapping, nmbrs_account)
    if problem is not None:
        return [_note(company, Verdict.UNCHECKED, problem[1].message)]
    nmbrs_company = work.connections.nmbrs_companies[nmbrs_account].get(company)
    if nmbrs_company is None:
        reason = f"company {company} is not among the companies Nmbrs account '{nmbrs_account}' reaches"
        return [_note(company, Verdict.UNCHECKED, reason)]
    name = nmbrs_company.name
    client = work.connections.nmbrs[nmbrs_account]
    try:
        found = find_runs(
            client, nmbrs_company, work.run_filter, work.completed.get(company, []), work.today, skip_booked=False
        )
    except Exception as exc:
        reason = f"reading the payroll runs of company {company} from Nmbrs failed: {exc}"
        return [_note(company, Verdict.UNCHECKED, reason, company_name=name)]
    checks = [_run_note(run, name, Verdict.SKIPPED, "not locked in Nmbrs yet: nothing posted") for run in found.waiting]
    if not found.todo:
        return checks or [_note(company, Verdict.SKIPPED, f"no run of {work.run_filter}", company_name=name)]
    refused = check_company(found.todo[0], mapping)  # a test company or a blocked debtor: nothing is posted
    if refused:
        reason = "; ".join(dict.fromkeys(refusal.message for refusal in refused)) + ": nothing posted"
        return checks + [_run_note(run, name, Verdict.SKIPPED, reason) for run in found.todo]
    account = mapping.visma_account
    visma = work.connections.visma[account]
    try:
        journals = extract_journals(company, nmbrs_company, client, found.todo, mapping_journal_kind(mapping))
        reference = work.connections.references.get(
            reference_key(mapping), visma, work.connections.tenants.get(account, "")
        )
    except ReferenceUnavailable as exc:
        return [*checks, _note(company, Verdict.UNCHECKED, exc.refusal.message, company_name=name)]
    except Exception as exc:
        reason = f"extracting the journals of company {company} from Nmbrs failed: {exc}"
        return [*checks, _note(company, Verdict.UNCHECKED, reason, company_name=name)]
    (plan,) = plan_read_companies([CompanyRead(journals, mapping, comparable(reference))])
    unbuilt = {row.reference for row in plan.rows}  # "" when the company's journals as a whole are unreadable
    for row in plan.rows:
        reason = f"Nmbrs' journal cannot be built ({row.reason}): nothing to compare"
        fields = {"company_name": name, "reference": row.reference, "period": row.period}
        checks.append(_note(company, Verdict.UNCHECKED, reason, administration=row.administration, **fields))
    if "" in unbuilt and plan.rows and not plan.postings:
        return checks
    expected = [
        Expected(
            key=posting.key,
            fingerprint=posting.fingerprint,
            company=company,
            reference=posting.reference,
            administration=posting.administration,
            payroll_period=posting.payroll_period,
            period_id=posting.period_id,
            payload=posting.payload,
            company_name=name,
        )
        for posting in plan.postings
    ]
    recorded = [
        entry
        for run in found.todo
        if run.reference not in unbuilt
        for entry in work.recorded.get((company, run.reference), [])
    ]
    read = read_back(account, visma, recorded, work.listings)
    return checks + reconcile(expected, recorded, read, company_names={company: name})


def read_back(account: str, client: VismaNetClient, recorded: Sequence[PostingEntry], listings: Listings) -> ReadBack:
    """Every batch the ledger records for these runs as Visma.net holds it now (None: 404), and the reversing
    batches its listing shows for them (read as well)."""
    wanted = batches_to_read(recorded)
    journals = {(entry.administration.split("/", 1)[0], entry.batch_number) for entry in recorded if entry.batch_number}
    unreadable: dict[BatchRef, str] = {}
    reversing: dict[BatchRef, list[str]] = {}
    for tenant, period_id in sorted(periods_to_list(recorded)):
        listed = listings.reversing(account, client, period_id)
        if isinstance(listed, str):
            for entry in recorded:
                if entry.period_id == period_id and entry.batch_number:
                    unreadable[(tenant, entry.batch_number)] = listed
            continue
        for original, numbers in listed.items():
            if (tenant, original) in journals:
                reversing[(tenant, original)] = numbers
                wanted |= {(tenant, number) for number in numbers}
    refs = sorted(ref for ref in wanted if ref not in unreadable)
    results = at_once([partial(_read_one, client, number) for _, number in refs], most=4)
    batches: dict[BatchRef, dict[str, Any] | None] = {}
    for ref, result in zip(refs, results, strict=True):
        if isinstance(result, str):
            unreadable[ref] = result
        else:
            batches[ref] = result
    return ReadBack(batches=batches, reversing=reversing, unreadable=unreadable)


def _read_one(client: VismaNetClient, number: str) -> dict[str, Any] | str | None:
    """The batch, None when Visma.net answers 404, or why it could not be read."""
    try:
        return client.journal_transaction(number)
    except NotFound:
        return None
    except Exception as exc:
        return str(exc)


# -- the flow -----------------------------------------------------------------------------------------------


def reconcile_label(period: str | None, run: str | None) -> str:
    """What a reconciliation looks at, as a person writes it (`2026-03`, `run NM2603R1`, `2026-03 run NM2603R1`;
    the previous month resolved); raises ValueError for a malformed period."""
    if not period and not run:
        period = DEFAULT_PERIOD
    return str(RunFilter(period_filter(period) if period else None, run or None))


def reconcile_run_name() -> str:
    parameters = flow_run.parameters
    what = parameters.get("period") or (f"run {parameters['run']}" if parameters.get("run") else DEFAULT_PERIOD)
    if parameters.get("period") and parameters.get("run"):
        what = f"{parameters['period']} run {parameters['run']}"
    companies = parameters.get("companies") or []
    shown = ""
    if companies:
        listed = ", ".join(str(c) for c in companies[:3]) + (f" +{len(companies) - 3}" if len(companies) > 3 else "")
        shown = f" · compan{'y' if len(companies) == 1 else 'ies'} {listed}"
    return f"reconcile {what}{shown}"


def _recorded(ledger: PostingLedger, companies: Sequence[int]) -> dict[tuple[int, str], list[PostingEntry]]:
    """The ledger's entries of the companies, by (company, run reference)."""
    wanted = set(companies)
    found: dict[tuple[int, str], list[PostingEntry]] = defaultdict(list)
    for entry in ledger.all_entries():
        if entry.company in wanted:
            found[(entry.company, entry.reference)].append(entry)
    return dict(found)


def run_reconciliation(
    period: str | None, run: str | None, companies: Sequence[int] | None, settings: Settings | None = None
) -> list[TransactionCheck]:
    """Inside a flow run: every selected company reconciled, at most `settings.max_workers` at once (the flow's
    task runner has that many threads); `settings` default to the run's, read when it started."""
    settings = settings or run_settings()
    if not period and not run:
        period = DEFAULT_PERIOD
    run_filter = RunFilter(period_filter(period) if period else None, run or None)
    selection = select_companies(load_mappings(), companies)
    checks = [
        _note(row.company, Verdict.UNCHECKED, row.reason, company_name=row.company_name) for row in selection.rows
    ]
    if not selection.mappings:
        return sort_checks(checks)
    ledger = PostingLedger.from_settings(settings, pool_size=settings.max_workers + 4)
    work = Work(
        selection=selection,
        connections=Connections(),
        run_filter=run_filter,
        today=today(),
        recorded=_recorded(ledger, list(selection.mappings)),
        completed=ledger.completed_runs(selection.mappings),
    )
    work.connections = connect_accounts(selection, use_nmbrs=True)
    try:
        futures = {company: reconcile_company.submit(company, quote(work)) for company in sorted(selection.mappings)}
        for company, future in futures.items():
            try:
                checks.extend(future.result())
            except Exception as exc:  # a bug in one company: reported, the others go on
                reason = f"reconciling company {company} failed: {type(exc).__name__}: {exc}"
                checks.append(_note(company, Verdict.UNCHECKED, reason))
    finally:
        work.connections.close()
    return sort_checks(checks)


TABLE_COLUMNS = (
    ("company", "Company"),
    ("reference", "Run"),
    ("period", "Period"),
    ("batch_number", "Batch"),
    ("account", "Account"),
    ("subaccount", "Subaccount"),
    ("side", "Side"),
    ("expected", "Expected (Nmbrs)"),
    ("found", "Found (Visma.net)"),
    ("difference", "Difference"),
    ("verdict", "Verdict"),
    ("reason", "Reason"),
)


def _cells(row: Any) -> dict[str, str]:
    data = row.model_dump()
    data["company"] = f"{row.company} {row.company_name}".strip()
    for name in ("expected", "found", "difference"):
        data[name] = f"{data[name]:.2f}"
    data["verdict"] = row.verdict.value
    return {name: str(data[name]) for name, _ in TABLE_COLUMNS}


def _markdown(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def publish_reconciliation(checks: Sequence[TransactionCheck], *, label: str) -> None:
    """The run's artifacts: a table of every difference (and one row per transaction that agrees), and a markdown
    report (the summary, then the differences with their reasons). Best effort: a view never fails the run."""
    rows = rows_of(checks)
    key = artifact_key("reconciliation", label)
    try:
        create_table_artifact(
            table=[{title: _cells(row)[name] for name, title in TABLE_COLUMNS} for row in rows],
            key=key,
            description=f"Reconciliation {label}: {summary(checks)}",
        )
        found = differences(checks)
        parts = [f"# Reconciliation {label}\n", f"{outcome_message(checks)}\n"]
        if found:
            shown = rows_of(found)
            header = "| " + " | ".join(title for _, title in TABLE_COLUMNS) + " |"
            rule = (
                "|"
                + "|".join(
                    "---:" if name in {"expected", "found", "difference"} else "---" for name, _ in TABLE_COLUMNS
                )
                + "|"
            )
            body = [
                "| " + " | ".join(_markdown(_cells(row)[name]) for name, _ in TABLE_COLUMNS) + " |" for row in shown
            ]
            parts += ["## Differences\n", header, rule, *body]
        else:
            parts.append("Every transaction agrees, to the cent.")
        create_markdown_artifact(
            markdown="\n".join(parts) + "\n", key=f"{key}-report", description=f"Reconciliation {label}: report"
        )
    except Exception as exc:
        logger.warning("could not create the reconciliation artifacts: %s", exc)


def final_state(checks: list[TransactionCheck]) -> State:
    """FAILED when anything differs or could not be checked (an automation can alert on it), COMPLETED when
    everything agrees; the message counts and names them; the data is the checks."""
    message = outcome_message(checks)
    return Failed(message=message, data=checks) if differences(checks) else Completed(message=message, data=checks)


def checks_of(state: State) -> list[TransactionCheck]:
    """The checks of a finished reconciliation (`return_state=True`), COMPLETED or FAILED; a run that failed
    before it had any raises its error."""
    return listed_result(state, "the reconciliation", "checks")


def _tag_run() -> None:
    """This project's tags on the flow run (best effort), as the deployments carry them."""
    try:
        from nmbrs_visma.flows.post_payroll_journals import tag_run
    except ImportError:  # pragma: no cover - the tagging helper is optional
        return
    tag_run(*RECONCILE_TAGS)


@flow(
    name="reconcile-payroll-journals",
    flow_run_name=reconcile_run_name,
    task_runner=SettingsTaskRunner(),  # sized by the run's settings, read when it starts
    description="Compare what Nmbrs' journals hold with what Visma.net holds now for the batches posted: per "
    "company, run, financial period, account and subaccount, to the cent; flags batches edited, deleted or reversed.",
)
def reconcile_payroll_journals(
    period: PeriodParameter = None,
    run: RunParameter = None,
    companies: CompaniesParameter = None,
) -> State:
    """Reconcile the payroll runs of a period (or one run) with the Visma.net general ledger: what the pipeline
    would post for them now against what Visma.net holds for the batches it sent. FAILED when anything differs.

    Args:
        period: The runs of this period: a month YYYY-MM (for a 4-weekly or weekly company, its periods ending in
            that month), a payroll period YYYY/NN, or previous-month. Empty (and no run): previous-month.
        run: Only this payroll run, by its reference (for example NM2603R1) or its Nmbrs id.
        companies: Nmbrs company numbers. Empty: every mapped company.
    """
    settings = run_settings()  # read when the run started; a bad value ends the run here, naming the variable
    _tag_run()
    log = get_run_logger()
    label = reconcile_label(period, run)
    checks = run_reconciliation(period, run, companies, settings)
    publish_reconciliation(checks, label=label)
    log.info("reconciliation %s: %s", label, summary(checks))
    for check in differences(checks):
        log.warning(
            "company %s run %s period %s batch %s: %s: %s",
            check.company, check.reference or "-", check.period or "-", check.batch_number or "-",
            check.verdict.value, check.reason,
        )  # fmt: skip
    return final_state(checks)


__all__ = [
    "DEFAULT_PERIOD",
    "Listings",
    "Work",
    "checks_of",
    "company_checks",
    "comparable",
    "final_state",
    "reconcile_company",
    "reconcile_label",
    "reconcile_payroll_journals",
    "run_reconciliation",
]
