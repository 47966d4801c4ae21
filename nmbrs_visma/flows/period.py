"""One payroll period of a run, as a pipeline: read ahead, and post each administration as soon as it is ready.

Per company, one read (tasks/prepare.py) in one of the flow's reading threads: its tenant's reference data
(read once per run), its runs and journals from Nmbrs. The companies read are planned (checked and built)
together, in one batch per plan step (`PLAN_BATCH` at most; sooner when posting runs short of work or nothing
more is being read): pandas costs a fixed few milliseconds per call. Once every company of an administration
is planned, one posting task posts the administration (its look-up runs there, under its locks:
tasks/posting.py). Reads run in the `read` lane, plan steps in the `plan` lane (both in the flow's reading
threads) and postings in the `post` lane (flows/lanes.py): a slow Nmbrs document never holds a Visma.net
posting slot, and the first administrations post while later companies are still read. In the run's last period, an
administration's status artifact is published the moment it is done (`StatusBoard`).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from prefect.futures import PrefectFuture
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from nmbrs_visma.blocks.locks import Reservation, reserve
from nmbrs_visma.flows.connections import Connections, Selection
from nmbrs_visma.flows.lanes import Lanes
from nmbrs_visma.journals.models import AdministrationMapping, Refusal
from nmbrs_visma.payroll_period import PayrollPeriod
from nmbrs_visma.posting_ledger import LedgerUnavailable, PostingLedger, PostingState
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.tasks.journal_file import file_journals
from nmbrs_visma.tasks.plan import CompanyPlan, CompanyRead, refused_row
from nmbrs_visma.tasks.posting import Posting, post_administration, reserve_administration_lock
from nmbrs_visma.tasks.prepare import CompanySources, plan_or_fail, plan_read_companies, read_company
from nmbrs_visma.tasks.reference import ReferenceKey, ReferenceUnavailable, reference_key
from nmbrs_visma.tasks.report import PayloadFile, publish_administration, write_payload

logger = logging.getLogger(__name__)

AdministrationGroup = tuple[str, str, str]  # (Visma.net account, branch, ledger): the companies posting together
PLAN_BATCH = 8  # companies planned together at most: batches past eight save little more per company
PLAN_SHORT = 2  # look-ups and postings queued below which the companies read so far are planned at once


def administration_group(mapping: AdministrationMapping) -> AdministrationGroup:
    return mapping.visma_account, mapping.branch, mapping.ledger


class StatusBoard:
    """Each administration's rows over the whole run; its keyed status artifact is published in the background
    the moment its last period is done, while others still post (all of them at the end of a run of hundreds
    of administrations was a long serial tail). `close()` waits for what is queued."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: dict[str, list[StatusRow]] = defaultdict(list)
        self.published: set[str] = set()
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status-artifacts")

    def add(self, rows: Sequence[StatusRow]) -> None:
        for row in rows:
            if row.administration:
                self.rows[row.administration].append(row)

    def publish(self, administration: str) -> None:
        """Queue the administration's artifact with its rows so far (again, if two groups share it)."""
        self.published.add(administration)
        rows = list(self.rows[administration])
        context = contextvars.copy_context()  # the flow run's: the artifact belongs to it
        self._publisher.submit(
            context.run, partial(publish_administration, administration, rows, title=self.title, dry_run=False)
        )

    def close(self) -> None:
        self._publisher.shutdown(wait=True)


class PeriodRun:
    """The companies of one period through the lanes; `rows` and `postings` hold the outcome after `run()`."""

    def __init__(
        self,
        selection: Selection,
        connections: Connections,
        period: PayrollPeriod,
        *,
        ledger: PostingLedger,
        workers: int,
        journal_file: Path | None = None,
        run_number: int = 1,
        post: bool = True,
        board: StatusBoard | None = None,
        last_period: bool = True,
        repost_changed: bool = False,
    ) -> None:
        self.selection = selection
        self.connections = connections
        self.period = period
        self.ledger = ledger
        self.repost_changed = repost_changed
        self.journal_file = journal_file
        self.run_number = run_number
        self.post = post
        self.board = board
        self.last_period = last_period
        # posting tasks: up to `workers` creating (holding a sending slot), as many more readying the next ones
        # (locks taken, periods looked up), so a slot freed is taken by a create, not by a task's start
        self.lanes = Lanes(read=workers, plan=1, post=2 * workers)
        self.lanes.feed("read", "post", queued=workers)
        self._sending = threading.BoundedSemaphore(workers)
        self._readers = ThreadPoolExecutor(workers + 1, thread_name_prefix="read")  # read and plan lanes
        self._read: list[tuple[int, CompanyRead]] = []  # companies read, not planned yet
        self._planning = False  # a plan step queued or running
        self.rows: list[StatusRow] = []
        self.postings: list[Posting] = []  # a dry run's planned postings, for its preview
        self._unplanned: Counter[AdministrationGroup] = Counter()  # companies not prepared yet
        self._ready: dict[AdministrationGroup, list[Posting]] = defaultdict(list)
        self._posting: Counter[AdministrationGroup] = Counter()  # posting tasks not finished yet
        self._administrations: dict[AdministrationGroup, set[str]] = defaultdict(set)
        self._reading: Counter[ReferenceKey] = Counter()  # companies not prepared yet, per tenant reference
        self._open_groups: Counter[str] = Counter()  # administrations not done yet, per Visma.net account
        self._flow_run_id = str(flow_run.get_id() or "") or None
        self._unreserved: list[Reservation] = []  # administrations' locks to ask for together
        self._batching = False  # a plan step's companies are being handed on: reserve once, after them

    def run(self) -> None:
        try:
            self._run()
        finally:
            self._readers.shutdown(wait=True)

    def _run(self) -> None:
        ready: list[int] = []
        for company, mapping in sorted(self.selection.mappings.items()):
            problem = self.connections.problem(mapping, self._nmbrs_account(company))
            if problem is not None:
                status, refusal = problem
                self._add(company, [refused_row(company, [refusal], period=self.period, status=status)])
            elif self.journal_file is None and self._nmbrs_company(company) is None:
                account = self._nmbrs_account(company)
                missing = Refusal(
                    code="unmapped_company",
                    company=company,
                    message=f"company {company} is not among the companies Nmbrs account '{account}' reaches",
                )
                self._add(company, [refused_row(company, [missing], period=self.period, status=Status.FAILED)])
            else:
                self._unplanned[administration_group(mapping)] += 1
                ready.append(company)
        for company in ready:  # counted first: an administration is complete only when all its companies are
            self._reading[reference_key(self.selection.mappings[company])] += 1
        for group in self._unplanned:
            self._open_groups[group[0]] += 1
        for company in ready:
            self._prepare(company)
        self.lanes.run()
        if self._read:  # every callback plans what is due, and the last read plans the rest
            raise RuntimeError(f"companies read but never planned: {[company for company, _ in self._read]}")

    # -- prepare, post, publish: each step queues the next -----------------------------------------------------

    def _prepare(self, company: int) -> None:
        mapping = self.selection.mappings[company]
        account = mapping.visma_account
        if self.journal_file is not None:  # one company, its journal in a file: prepared right here
            try:
                reference = self.connections.references.get(
                    reference_key(mapping), self.connections.visma[account], self.connections.tenants.get(account, "")
                )
            except ReferenceUnavailable as exc:
                self._unavailable(company, exc)
                return
            journals = file_journals(self.journal_file, company, self.period, self.run_number)
            self._prepared(company, plan_or_fail(journals, mapping, reference, self.period))
            return
        nmbrs_account = self._nmbrs_account(company)
        assert nmbrs_account is not None
        sources = CompanySources(
            nmbrs=self.connections.nmbrs[nmbrs_account],
            visma=self.connections.visma[account],
            tenant_id=self.connections.tenants.get(account, ""),
            references=self.connections.references,
        )
        read = partial(read_company, company, self._nmbrs_company(company), self.period, mapping, sources)
        context = contextvars.copy_context()  # the flow run's, as a task's would be
        submit = partial(self._readers.submit, context.run, read)
        self.lanes.add("read", submit, partial(self._company_read, company))

    def _company_read(self, company: int, future: Future[CompanyRead]) -> None:
        try:
            self._read.append((company, future.result()))
        except ReferenceUnavailable as exc:
            self._unavailable(company, exc)
        except Exception as exc:  # planning failures come back as rows: this is the read from Nmbrs
            reason = f"extracting the journals of company {company} from Nmbrs failed: {exc}"
            self._add(company, [self._failed(company, reason)])
            self._planned(company, [])
        self._plan_when_due()

    def _plan_when_due(self) -> None:
        """Plan the companies read so far in one step, once there are `PLAN_BATCH` of them, or sooner when the
        look-ups and postings queued run short or nothing more is being read (one step at a time)."""
        if not self._read or self._planning:
            return
        short = self.lanes.waiting("post") < PLAN_SHORT
        if len(self._read) < PLAN_BATCH and not short and self.lanes.busy("read"):
            return
        batch, self._read = self._read[:PLAN_BATCH], self._read[PLAN_BATCH:]
        self._planning = True
        plan = partial(plan_read_companies, [read for _, read in batch], self.period)
        submit = partial(self._readers.submit, contextvars.copy_context().run, plan)
        self.lanes.add("plan", submit, partial(self._batch_planned, [company for company, _ in batch]))

    def _batch_planned(self, companies: list[int], future: Future[list[CompanyPlan]]) -> None:
        self._planning = False
        plans = future.result()  # plan_read_companies turns every failure into its company's row
        self._batching = True
        try:
            for company, plan in zip(companies, plans, strict=True):
                self._prepared(company, plan)
        finally:
            self._batching = False
            self._reserve()
        self._plan_when_due()

    def _reserve(self) -> None:
        """Ask for the Prefect locks of the administrations just sent to posting, in one call."""
        reserve(self._unreserved)
        self._unreserved = []

    def _unavailable(self, company: int, exc: ReferenceUnavailable) -> None:
        self._add(company, [refused_row(company, [exc.refusal], period=self.period, status=Status.FAILED)])
        self._planned(company, [])

    def _prepared(self, company: int, plan: CompanyPlan) -> None:
        self._add(company, plan.rows)
        self._planned(company, plan.postings)

    def _planned(self, company: int, postings: list[Posting]) -> None:
        """Count the company as prepared; the last company of an administration sends it to posting."""
        mapping = self.selection.mappings[company]
        self._reading[reference_key(mapping)] -= 1
        if self.last_period and self._reading[reference_key(mapping)] == 0:
            self.connections.references.forget(reference_key(mapping))
        group = administration_group(mapping)
        if not self.post:  # kept for the preview only: a posting run lets each payload go once it is sent
            self.postings.extend(postings)
        self._ready[group].extend(postings)
        self._unplanned[group] -= 1
        if self._unplanned[group] == 0:
            ready = self._ready.pop(group)
            if self.post and ready:
                self._post(group, ready)
            self._maybe_done(group)

    def _post(self, group: AdministrationGroup, postings: list[Posting]) -> None:
        """One posting task per administration of the group."""
        by_administration: dict[str, list[Posting]] = defaultdict(list)
        for posting in postings:
            by_administration[posting.administration].append(posting)
        for administration, batch in sorted(by_administration.items()):
            self._posting[group] += 1
            reservation = reserve_administration_lock(administration, timeout_seconds=self.ledger.lock_timeout)
            self._unreserved.append(reservation)
            submit = partial(
                post_administration.submit,
                administration,
                quote(batch),  # the payloads: not walked by Prefect for futures
                self.connections.visma[group[0]],
                quote(self.ledger),
                self._flow_run_id,
                quote(self._sending),
                self.repost_changed,
                quote(reservation),
            )
            self.lanes.add("post", submit, partial(self._posted, group, administration, batch, reservation))
        if not self._batching:
            self._reserve()

    def _posted(
        self,
        group: AdministrationGroup,
        administration: str,
        postings: list[Posting],
        reservation: Reservation,
        future: PrefectFuture[Any],
    ) -> None:
        reservation.cancel()  # the task may have stopped before it held or gave up its lock
        try:
            rows = future.result()
        except Exception as exc:
            reason = f"posting to {administration} stopped: {type(exc).__name__}: {exc}; a re-run looks it up first"
            rows = [posting.row(Status.FAILED, reason=reason) for posting in postings]
        self._add_to_group(group, rows)
        self._posting[group] -= 1
        self._maybe_done(group)
        self._plan_when_due()  # a posting done: the queues may be running short

    def _maybe_done(self, group: AdministrationGroup) -> None:
        """Once an administration is prepared and posted in the run's last period, publish its status, and close
        its account's client when the account's last administration is done (memory stays flat in accounts)."""
        if self._unplanned[group] or self._posting[group] or not self.last_period:
            return
        self._open_groups[group[0]] -= 1
        if self._open_groups[group[0]] == 0:
            self.connections.release_visma(group[0], closer=self._readers)  # not in the flow's thread: it drives
        if self.board is not None:
            for administration in sorted(self._administrations.pop(group, set())):
                self.board.publish(administration)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _add(self, company: int, rows: Sequence[StatusRow]) -> None:
        self._add_to_group(administration_group(self.selection.mappings[company]), rows)

    def _add_to_group(self, group: AdministrationGroup, rows: Sequence[StatusRow]) -> None:
        self.rows.extend(rows)
        if self.board is not None:
            self.board.add(rows)
            self._administrations[group].update(row.administration for row in rows if row.administration)

    def _nmbrs_account(self, company: int) -> str | None:
        return None if self.journal_file is not None else self.selection.nmbrs_accounts[company]

    def _nmbrs_company(self, company: int) -> Any:
        account = self._nmbrs_account(company)
        return self.connections.nmbrs_companies[account].get(company) if account is not None else None

    def _failed(self, company: int, reason: str) -> StatusRow:
        return StatusRow(company=company, period=self.period.period_id, status=Status.FAILED, reason=reason)


def preview(
    postings: Sequence[Posting], ledger: PostingLedger, directory: Path
) -> tuple[list[StatusRow], list[PayloadFile]]:
    """A dry run: write each payload to a file and report it; nothing is sent, nothing is looked up in
    Visma.net (what the ledger records as sent with the same content is reported as already sent)."""
    rows: list[StatusRow] = []
    files: list[PayloadFile] = []
    try:
        known = ledger.entries(posting.key for posting in postings)
    except LedgerUnavailable as exc:
        logger.warning("dry run: %s; every payload is previewed", exc)
        known = {}
    for posting in postings:
        sent = next(
            (
                entry
                for entry in known.get(posting.key, [])
                if entry.fingerprint == posting.fingerprint and entry.state is PostingState.SENT
            ),
            None,
        )
        if sent is not None:
            rows.append(posting.row(Status.ALREADY_SENT, batch_number=sent.batch_number, period=sent.period_id))
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
