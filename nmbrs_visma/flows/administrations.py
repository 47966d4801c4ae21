"""One straight line of work per administration: find its companies' runs, extract, check, split and build
them (the `prepare` task), then look up and post (the `post` task), then record and show what happened.

An administration is the companies booking into one Visma.net (account, branch, ledger). The flow runs up to
three times `Pass.workers` (the run's `Settings.max_workers`) administrations at once: while the first ones
create (at most `workers` creates at once, the `sending` slots), the next ones read Nmbrs and take their
locks, so a slot freed is taken by a create. The posting locks are asked for ahead, `LOCK_BATCH`
administrations in one call to the Prefect server (`AheadLocks`), so each is granted while its unit prepares.
A failed stage is a failed task run and that administration's rows say why; the others go on. The companies
of one administration are planned together (one `build_many`: pandas has a fixed cost per call, paid once).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Completed, State
from prefect.utilities.annotations import quote

from nmbrs_visma.blocks.locks import Reservation, administration_lock_name, reserve
from nmbrs_visma.flows.connections import Connections, Selection
from nmbrs_visma.journals.checks import check_company
from nmbrs_visma.journals.keys import administration_id
from nmbrs_visma.journals.models import AdministrationMapping, AdministrationReference, PayrollRun, Refusal
from nmbrs_visma.output import pass_progress
from nmbrs_visma.posting_ledger import CompletedRun, LedgerUnavailable, PostingLedger, PostingState
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.settings import DEFAULT_DOCUMENT_WAIT, DEFAULT_SETTLE_SECONDS
from nmbrs_visma.tasks.extract import CompanyJournals, extract_journals, mapping_journal_kind
from nmbrs_visma.tasks.journal_file import file_journals
from nmbrs_visma.tasks.plan import CompanyPlan, CompanyRead, plan_read_companies, refused_row, run_label, run_period
from nmbrs_visma.tasks.posting import Posting, post_administration
from nmbrs_visma.tasks.reference import ReferenceUnavailable, reference_key
from nmbrs_visma.tasks.report import PayloadFile, StatusArtifacts, publish_administration, write_payload
from nmbrs_visma.tasks.runs import RunFilter, find_runs

logger = logging.getLogger(__name__)

AdministrationGroup = tuple[str, str, str]  # (Visma.net account, branch, ledger): the companies posting together
BOOKED = frozenset({Status.SENT, Status.ALREADY_SENT})


def administration_group(mapping: AdministrationMapping) -> AdministrationGroup:
    return mapping.visma_account, mapping.branch, mapping.ledger


def group_administration(connections: Connections, group: AdministrationGroup) -> str:
    """The administration id the group posts to ("" when its account has no tenant: it cannot post)."""
    account, branch, ledger = group
    tenant = connections.tenants.get(account, "")
    return administration_id(tenant, branch, ledger) if tenant else ""


PLAN_BATCH = 8  # companies planned in one build at most: a bigger batch keeps its first company waiting longer
GATHER_SECONDS = 0.1  # how long a plan waits for the companies still being read before it starts without them
COMPLETED_BATCH = 50  # completed runs written to the ledger together
UNITS_PER_WORKER = 3  # administrations under way per sending slot: the others read Nmbrs, lock and look up
LOCK_BATCH = 16  # administrations whose posting locks are asked for in one call (one lease on the Prefect server)


class AheadLocks:
    """The posting locks of a pass's administrations, asked for `LOCK_BATCH` at a time in the order their units
    start: the first unit of a batch to start asks for its batch's locks and the next batch's, each batch in one
    call to the Prefect server, so each lock is granted well before its unit posts (a call the server answers
    busy is asked again), and the server answers one call (and one release) per batch instead of one per
    administration (each is a write on the server). Each posting task holds its own lock or gives it up; the
    batch's lease goes back when the last of them is done (`blocks.locks`).

    `administrations`: each unit's administration, in the order the units start (None: it cannot post, e.g. its
    account has no tenant); an administration already in the batch is not asked for twice (its second unit
    takes the lock itself)."""

    def __init__(
        self,
        administrations: Sequence[str | None],
        *,
        timeout_seconds: float,
        ask: Callable[[Sequence[Reservation]], None] = reserve,
    ) -> None:
        self.administrations = list(administrations)
        self.timeout_seconds = timeout_seconds
        self._ask = ask
        self._batches: dict[int, dict[int, Reservation]] = {}  # batch -> unit position -> its reservation
        self._mutex = threading.Lock()

    def take(self, position: int) -> Reservation | None:
        """The reservation of the unit at `position` (its batch and the next asked for now, if not yet)."""
        batch = position // LOCK_BATCH
        with self._mutex:
            new = [self._reserve(number) for number in (batch, batch + 1) if number not in self._batches]
            reservation = self._batches[batch].get(position)
        for reservations in new:
            if reservations:
                self._ask(reservations)
        return reservation

    def cancel(self) -> None:
        """Give up every reservation not held (the pass is over, or stopped before some units started)."""
        with self._mutex:
            reservations = [r for reserved in self._batches.values() for r in reserved.values()]
        for reservation in reservations:
            reservation.cancel()

    def _reserve(self, batch: int) -> list[Reservation]:
        reserved = self._batches[batch] = {}
        seen: set[str] = set()
        for index in range(batch * LOCK_BATCH, min(len(self.administrations), (batch + 1) * LOCK_BATCH)):
            administration = self.administrations[index]
            if administration and administration not in seen:
                seen.add(administration)
                reserved[index] = Reservation(
                    administration_lock_name(administration), timeout_seconds=self.timeout_seconds
                )
        return list(reserved.values())


class Planner:
    """Plans the companies of administrations preparing at the same moment in one build, up to `PLAN_BATCH`
    companies: pandas' fixed cost per call outweighs the work on a run's few hundred lines (a company planned
    alone costs several times its share of a batch of eight), so a batch pays it once. One plan at a time, in
    its own thread. A plan waits up to `gather` seconds for the companies still being read (`reading()`) to
    join it; with none being read, it starts at once."""

    def __init__(self, most: int = PLAN_BATCH, *, gather: float = GATHER_SECONDS) -> None:
        self.most = most
        self.gather = gather
        self._queue: queue.SimpleQueue[tuple[list[CompanyRead], Future[list[CompanyPlan]]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._reading = 0  # preparations reading their companies: plan requests on their way
        self._count = threading.Lock()

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Around a preparation's reads: a plan under way waits for this one's request (up to `gather`)."""
        with self._count:
            self._reading += 1
        try:
            yield
        finally:
            with self._count:
                self._reading -= 1

    def plan(self, reads: list[CompanyRead]) -> list[CompanyPlan]:
        """`plan_read_companies(reads)`, batched with whatever else is waiting."""
        future: Future[list[CompanyPlan]] = Future()
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="planner", daemon=True)
                self._thread.start()
        self._queue.put((reads, future))
        return future.result()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch, stop = [first], False
            until = time.monotonic() + self.gather
            while sum(len(reads) for reads, _ in batch) < self.most:
                try:
                    waiting = self._queue.get_nowait()
                except queue.Empty:
                    left = until - time.monotonic()
                    if self._reading <= 0 or left <= 0:
                        break
                    try:
                        waiting = self._queue.get(timeout=min(left, 0.005))  # a request, or a look at `_reading`
                    except queue.Empty:
                        continue
                if waiting is None:
                    stop = True
                    break
                batch.append(waiting)
            self._plan(batch)
            if stop:
                return

    def _plan(self, batch: list[tuple[list[CompanyRead], Future[list[CompanyPlan]]]]) -> None:
        try:
            plans = plan_read_companies([read for reads, _ in batch for read in reads])
        except BaseException as exc:  # a bug: every waiting administration fails with it, none hangs
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for reads, future in batch:
            future.set_result(plans[start : start + len(reads)])
            start += len(reads)


@dataclass
class Pass:
    """What every administration of one flow run shares: the companies, clients, ledger, filter and limits
    (`workers`, `settle_seconds` and `document_wait` from the run's settings, read once when it started)."""

    selection: Selection
    connections: Connections
    ledger: PostingLedger
    run_filter: RunFilter
    workers: int
    today: dt.date
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    document_wait: float = DEFAULT_DOCUMENT_WAIT
    post: bool = True
    repost_changed: bool = False
    journal_file: Path | None = None
    run_number: int = 1
    title: str = ""
    completed: dict[int, list[CompletedRun]] = field(default_factory=dict)
    flow_run_id: str | None = None
    progress: Callable[[int, int], None] | None = field(default_factory=pass_progress.get)  # (done, total)
    sending: threading.BoundedSemaphore = field(init=False)
    planner: Planner = field(init=False)
    reads: ThreadPoolExecutor = field(init=False)  # Nmbrs journal reads beside the unit's own thread

    def __post_init__(self) -> None:
        self.sending = threading.BoundedSemaphore(self.workers)
        self.planner = Planner()
        self.reads = ThreadPoolExecutor(UNITS_PER_WORKER * self.workers, thread_name_prefix="nmbrs-read")

    def nmbrs_account(self, company: int) -> str | None:
        return None if self.journal_file is not None else self.selection.nmbrs_accounts[company]


@dataclass
class Prepared:
    """An administration's preparation: rows of what is not posted (refused, waiting, nothing new) and the
    postings, with the runs they book (to record each run once all its transactions are booked)."""

    rows: list[StatusRow] = field(default_factory=list)
    postings: list[Posting] = field(default_factory=list)
    runs: list[PayrollRun] = field(default_factory=list)

    def message(self) -> str:
        refused = [row for row in self.rows if row.status in {Status.REFUSED, Status.FAILED}]
        waiting = sum(1 for row in self.rows if row.status is Status.WAITING)
        parts = [f"{len(self.postings)} transaction(s) of {len(self.runs)} run(s) to post"]
        if waiting:
            parts.append(f"{waiting} run(s) waiting to be locked in Nmbrs")
        if refused:
            parts.append(f"{len(refused)} refused: " + "; ".join(row.reason for row in refused[:3]))
        return "; ".join(parts)


def administration_label(companies: Sequence[int], selection: Selection, names: dict[int, str]) -> str:
    """What a person recognises in the task list: the company name(s) and numbers, then the ledger."""
    mapping = selection.mappings[companies[0]]
    shown = ", ".join(f"{names.get(c) or 'company'} {c}" for c in companies[:3])
    more = f" +{len(companies) - 3}" if len(companies) > 3 else ""
    return f"{shown}{more} -> {mapping.visma_account}/{mapping.branch}/{mapping.ledger}"


@task(name="prepare-administration", task_run_name="prepare {label}", cache_policy=NO_CACHE)
def prepare_administration(label: str, companies: list[int], work: Pass) -> State:
    """Prefect task: the administration's runs found, extracted, checked, split and built. Reads only, so a
    failure costs nothing to redo; its state message says what is to post and why anything was refused."""
    prepared = Prepared()
    reads: list[CompanyRead] = []
    with work.planner.reading():
        for company in companies:
            rows, read = _read_company(company, work)
            prepared.rows.extend(rows)
            if read is not None:
                reads.append(read)
    if reads:
        for read, plan in zip(reads, work.planner.plan(reads), strict=True):
            prepared.rows.extend(plan.rows)
            prepared.postings.extend(plan.postings)
            runs = {posting.run_id for posting in plan.postings}
            prepared.runs.extend(j.run for j in read.journals.runs if j.run.run_id in runs)
    return Completed(message=prepared.message(), data=prepared)


def _read_company(company: int, work: Pass) -> tuple[list[StatusRow], CompanyRead | None]:
    """The company's rows that need no planning (a problem, waiting runs, nothing new) and its read, if any."""
    mapping = work.selection.mappings[company]
    nmbrs_account = work.nmbrs_account(company)
    problem = work.connections.problem(mapping, nmbrs_account)
    if problem is not None:
        status, refusal = problem
        return [refused_row(company, [refusal], status=status)], None
    if work.journal_file is not None:
        rows: list[StatusRow] = []
        read_journals = partial(
            file_journals, work.journal_file, company, work.run_filter.period, work.run_number, mapping
        )
    else:
        assert nmbrs_account is not None
        rows, read = _runs_to_read(company, mapping, nmbrs_account, work)
        if read is None:
            return rows, None
        read_journals = read
    # the journals are read while the tenant's reference is (on its first company): two waits become one
    reading = work.reads.submit(contextvars.copy_context().run, read_journals)
    try:
        reference = _reference(mapping, work)
    except ReferenceUnavailable as exc:
        return [*rows, refused_row(company, [exc.refusal], status=Status.FAILED)], None
    finally:
        wait([reading])
    try:
        journals = reading.result()
    except Exception as exc:
        reason = f"extracting the journals of company {company} from Nmbrs failed: {exc}"
        return [*rows, _failed(company, reason)], None
    return rows, CompanyRead(journals, mapping, reference)


def _runs_to_read(
    company: int, mapping: AdministrationMapping, nmbrs_account: str, work: Pass
) -> tuple[list[StatusRow], Callable[[], CompanyJournals] | None]:
    """The company's rows found in Nmbrs (waiting runs, nothing new, a company-level refusal) and, when it has
    runs to post, the read of their journals."""
    nmbrs_company = work.connections.nmbrs_companies[nmbrs_account].get(company)
    if nmbrs_company is None:
        missing = Refusal(
            code="unmapped_company",
            company=company,
            message=f"company {company} is not among the companies Nmbrs account '{nmbrs_account}' reaches",
        )
        return [refused_row(company, [missing], status=Status.FAILED)], None
    client = work.connections.nmbrs[nmbrs_account]
    try:
        completed = work.completed.get(company, [])
        found = find_runs(
            client, nmbrs_company, work.run_filter, completed, work.today, skip_booked=not work.repost_changed
        )
    except Exception as exc:
        return [_failed(company, f"reading the payroll runs of company {company} from Nmbrs failed: {exc}")], None
    rows = [_waiting(company, nmbrs_company.name, run) for run in found.waiting]
    if not found.todo:
        return rows or [_nothing(company, nmbrs_company.name, work.run_filter)], None
    if check_company(found.todo[0], mapping):  # a test company or a blocked debtor: its journals are not read
        administration = group_administration(work.connections, administration_group(mapping))
        for run in found.todo:
            rows.append(
                refused_row(
                    company, check_company(run, mapping), period=run_period(run), company_name=nmbrs_company.name,
                    administration=administration, reference=run.reference, run_period=run_label(run),
                )
            )  # fmt: skip
        return rows, None
    kind = mapping_journal_kind(mapping)
    return rows, partial(extract_journals, company, nmbrs_company, client, found.todo, kind, work.document_wait)


def _reference(mapping: AdministrationMapping, work: Pass) -> AdministrationReference:
    """The mapping's tenant reference, read once per run (`ReferenceUnavailable` when it cannot be)."""
    account = mapping.visma_account
    return work.connections.references.get(
        reference_key(mapping), work.connections.visma[account], work.connections.tenants.get(account, "")
    )


def _waiting(company: int, name: str, run: PayrollRun) -> StatusRow:
    return StatusRow(
        company=company,
        company_name=name,
        period=run_period(run),
        reference=run.reference,
        run_period=run_label(run),
        status=Status.WAITING,
        reason=f"run {run.run_number} of {run.year} is not locked in Nmbrs yet: posted by the first pass after it is",
    )


def _nothing(company: int, name: str, run_filter: RunFilter) -> StatusRow:
    reason = "nothing new in Nmbrs: every locked run is booked" if run_filter.run_driven else f"no run of {run_filter}"
    return StatusRow(company=company, company_name=name, status=Status.NO_RUN, reason=reason)


def _failed(company: int, reason: str) -> StatusRow:
    return StatusRow(company=company, status=Status.FAILED, reason=reason)


class Administrations:
    """Every administration of a pass through its straight line, at most `UNITS_PER_WORKER * workers` at once;
    `rows` and (a dry run's) `postings` hold the outcome after `run()`, `published` those with an artifact."""

    def __init__(self, work: Pass) -> None:
        self.work = work
        self.rows: list[StatusRow] = []
        self.postings: list[Posting] = []
        self.published: set[str] = set()
        self._guard = threading.Lock()
        self._names: dict[int, str] = {}
        self._groups: dict[AdministrationGroup, list[int]] = defaultdict(list)
        for company, mapping in sorted(work.selection.mappings.items()):
            self._groups[administration_group(mapping)].append(company)
            account = work.nmbrs_account(company)
            nmbrs_company = work.connections.nmbrs_companies.get(account or "", {}).get(company)
            self._names[company] = nmbrs_company.name if nmbrs_company is not None else ""
        self._open_accounts = Counter(group[0] for group in self._groups)
        self._open_references = Counter(reference_key(work.selection.mappings[c]) for c in work.selection.mappings)
        self._artifacts = ThreadPoolExecutor(max_workers=1, thread_name_prefix="status-artifacts")
        self._status_artifacts: StatusArtifacts | None = None
        self._completed: list[CompletedRun] = []
        self._locks: AheadLocks | None = None
        if work.post:
            self._locks = AheadLocks(
                [group_administration(work.connections, group) or None for group in self._groups],
                timeout_seconds=work.ledger.lock_timeout,
            )

    def run(self) -> None:
        if self.work.flow_run_id is None:
            self.work.flow_run_id = str(flow_run.get_id() or "") or None
        units = ThreadPoolExecutor(max(1, UNITS_PER_WORKER * self.work.workers), thread_name_prefix="administration")
        try:
            futures = [
                units.submit(contextvars.copy_context().run, self._administration, position, group, companies)
                for position, (group, companies) in enumerate(self._groups.items())
            ]
            for future in futures:
                future.result()
        finally:
            units.shutdown(wait=True)
            if self._locks is not None:  # units that never started (a pass stopped by an error) give theirs up
                self._locks.cancel()
            self.work.reads.shutdown(wait=True)
            self.work.planner.close()
            self._write_completed()
            if self._status_artifacts is not None:
                self._artifacts.submit(self._status_artifacts.close)  # on its own thread, after the last artifact
            self._artifacts.shutdown(wait=True)

    def _administration(self, position: int, group: AdministrationGroup, companies: list[int]) -> None:
        """One administration's straight line; every company leaves with at least one row."""
        label = administration_label(companies, self.work.selection, self._names)
        reservation = self._locks.take(position) if self._locks is not None else None
        try:
            try:
                state = prepare_administration(label, quote(companies), quote(self.work), return_state=True)
                prepared: Prepared = state.result()
            except Exception as exc:
                reason = f"preparing {label} failed: {type(exc).__name__}: {exc}"
                prepared = Prepared(rows=[_failed(company, reason) for company in companies])
            rows = list(prepared.rows)
            if not self.work.post:
                with self._guard:
                    self.postings.extend(prepared.postings)
            elif prepared.postings:
                rows.extend(self._post(prepared, reservation))
        finally:
            if reservation is not None:  # a lock its posting task did not take: back at once, not at its deadline
                reservation.cancel()
        self._done(group, companies, rows)

    def _post(self, prepared: Prepared, reservation: Reservation | None) -> list[StatusRow]:
        by_administration: dict[str, list[Posting]] = defaultdict(list)
        for posting in prepared.postings:
            by_administration[posting.administration].append(posting)
        rows: list[StatusRow] = []
        for administration, postings in sorted(by_administration.items()):
            client = self.work.connections.visma[self.work.selection.mappings[postings[0].company].visma_account]
            try:
                rows.extend(
                    post_administration(
                        administration,
                        quote(postings),
                        client,
                        quote(self.work.ledger),
                        self.work.flow_run_id,
                        quote(self.work.sending),
                        self.work.repost_changed,
                        reservation=reservation
                        if reservation is not None and reservation.name == administration_lock_name(administration)
                        else None,
                        settle_seconds=self.work.settle_seconds,
                    )
                )
            except Exception as exc:
                reason = f"posting to {administration} stopped: {type(exc).__name__}: {exc}; a re-run looks it up first"
                rows.extend(posting.row(Status.FAILED, reason=reason) for posting in postings)
        if self.work.journal_file is None:
            self._record_completed(prepared, rows)
        return rows

    def _record_completed(self, prepared: Prepared, rows: list[StatusRow]) -> None:
        """Each run whose every transaction is booked, in the ledger: the run-driven pass does not read it again."""
        transactions = Counter(posting.run_id for posting in prepared.postings)
        problems = {(row.company, row.reference) for row in rows if row.status not in BOOKED}
        completed = [
            CompletedRun.of(run, transactions[run.run_id], self.work.flow_run_id)
            for run in prepared.runs
            if (run.company_number, run.reference) not in problems
        ]
        with self._guard:
            self._completed.extend(completed)
            due = len(self._completed) >= COMPLETED_BATCH
        if due:
            self._write_completed()

    def _write_completed(self) -> None:
        """The completed runs noted so far, in one write (a run not recorded is read again by the next pass, and
        found sent: nothing is lost)."""
        with self._guard:
            completed, self._completed = self._completed, []
        try:
            self.work.ledger.complete_runs(completed)
        except LedgerUnavailable as exc:
            logger.warning("could not record %d completed run(s): %s", len(completed), exc)

    def _done(self, group: AdministrationGroup, companies: list[int], rows: list[StatusRow]) -> None:
        """Rows kept; the account's client closed after its last administration, the tenant's reference dropped
        after its last company (memory stays flat in accounts and tenants); the status artifact published."""
        with self._guard:
            self.rows.extend(rows)
            self._open_accounts[group[0]] -= 1
            last_of_account = self._open_accounts[group[0]] == 0
            forget = []
            for company in companies:
                key = reference_key(self.work.selection.mappings[company])
                self._open_references[key] -= 1
                if self._open_references[key] == 0:
                    forget.append(key)
        if self.work.progress is not None:  # administrations done / total (the command line's progress display)
            self.work.progress(len(self._groups) - sum(self._open_accounts.values()), len(self._groups))
        for key in forget:
            self.work.connections.references.forget(key)
        if last_of_account:
            self.work.connections.release_visma(group[0])
        if not self.work.post:
            return
        administrations = sorted({row.administration for row in rows if row.administration})
        with self._guard:
            if self._status_artifacts is None:
                self._status_artifacts = StatusArtifacts(self.work.flow_run_id)
            artifacts = self._status_artifacts
        for administration in administrations:
            mine = [row for row in rows if row.administration == administration]
            with self._guard:
                self.published.add(administration)
            context = contextvars.copy_context()  # the flow run's: the artifact belongs to it
            self._artifacts.submit(
                context.run,
                partial(
                    publish_administration,
                    administration,
                    mine,
                    title=self.work.title,
                    dry_run=False,
                    create=artifacts.create,
                ),
            )


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
        row = posting.row(Status.DRY_RUN, reason=f"payload in {payload_file.path.name}")
        rows.append(row.model_copy(update={"payload_file": str(payload_file.path)}))
    return rows, files
