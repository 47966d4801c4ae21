"""Post one administration's journal transactions exactly once: the ledger first, a look-up under the locks.

For the transactions of one administration:
1. a key whose content the posting ledger holds as sent (and released, when the mapping releases) is reported
   "already sent" without any API call: a routine re-run is free;
2. for the others, under the administration's lock on the Prefect server (what every worker shares, even one
   left on its own default ledger) and the keys' locks in the ledger, the keys' periods are listed in Visma.net
   (the period booked in and the payroll period, each once), and every key is decided on what the ledger and
   the listing say together, by the marker `[nv:<key>:<fingerprint>]` each transaction carries:
   - its content there already: already sent (adopted into the ledger; released now if that failed before);
   - another content under the key: `changed`, nothing posted; with `repost_changed` the sent batch is
     reversed (journals/reversal.py) and the new content posted, each under its own key;
   - the same content under another key (a file and the API, two run numbers): refused, naming that batch;
   - an intent whose create never answered and that the listing does not show: `pending` until the settle
     time has passed (a lagging listing), then posted;
   - nothing: the intent is written, the transaction created, the outcome written.
3. the creates wait for a sending slot (`sending`, shared by the run's posting tasks), so the locks, listings
   and decisions of one administration happen while others create.
A create whose answer is lost (time-out, reset, 5xx) is never sent again blindly: the period is listed again;
a transaction found is recorded as sent, one not found is `pending` and keeps its intent.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE

from nmbrs_visma.blocks.locks import administration_lock_name
from nmbrs_visma.clients.errors import ApiError
from nmbrs_visma.fan_out import at_once
from nmbrs_visma.journals.keys import key_marker, read_marker, reversal_fingerprint, reversal_key
from nmbrs_visma.journals.reversal import reversal_of
from nmbrs_visma.posting_ledger import (
    HeldKeys,
    LedgerUnavailable,
    LockTimeout,
    PostingEntry,
    PostingKind,
    PostingLedger,
    PostingState,
    holder_name,
)
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.settings import DEFAULT_SETTLE_SECONDS

if TYPE_CHECKING:
    from nmbrs_visma.blocks.locks import Reservation
    from nmbrs_visma.clients.visma_net import JournalTransactionSummary

logger = logging.getLogger(__name__)

LISTINGS_AT_ONCE = 4  # periods of one administration looked up at once (well inside a tenant's rate budget)
RELEASED_STATUSES = frozenset({"Unposted", "Posted"})
BOOKED_STATES = frozenset({PostingState.SENT, PostingState.REVERSED})  # Visma.net holds the batch
AdministrationLock = Callable[[str], AbstractContextManager[object]]


class LedgerClient(Protocol):
    """The part of `VismaNetClient` posting needs."""

    def create_journal_transaction(self, payload: bytes) -> str: ...

    def list_journal_transactions(self, period_id: str, *, module: str = "GL") -> list[JournalTransactionSummary]: ...

    def release_journal_transaction(self, batch_number: str) -> None: ...

    def journal_transaction(self, batch_number: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Posting:
    """One journal transaction ready to post: its key and content, what it books, and the exact payload."""

    key: str
    fingerprint: str
    company: int
    company_name: str
    run_id: str
    reference: str
    administration: str
    payroll_period: str  # YYYYPP the lines belong to (part of the key)
    period_id: str  # YYYYPP booked in
    lines: int
    debit: Decimal
    credit: Decimal
    payload: bytes = field(repr=False)
    release: bool = False
    note: str = ""  # e.g. booked in the first open period after a closed one
    kind: PostingKind = "journal"
    reverses: str | None = None  # a reversal: the batch it reverses
    undoes: tuple[str, str] | None = None  # a reversal: the (key, fingerprint) of the content it reverses
    run_period: str = ""  # the run's payroll period as a person writes it (2026-03, 2026/13): its status artifact

    def row(
        self,
        status: Status,
        *,
        batch_number: str | None = None,
        reason: str = "",
        period: str | None = None,
        codes: tuple[str, ...] = (),
    ) -> StatusRow:
        reason = "; ".join(part for part in (self.note, reason) if part)
        return StatusRow(
            company=self.company,
            company_name=self.company_name,
            administration=self.administration,
            period=period or self.period_id,
            reference=self.reference,
            lines=self.lines,
            debit=self.debit,
            credit=self.credit,
            batch_number=batch_number,
            status=status,
            reason=reason,
            codes=codes,
            run_period=self.run_period,
        )

    def entry(self, state: PostingState, **changes: Any) -> PostingEntry:
        fields: dict[str, Any] = {
            "key": self.key,
            "fingerprint": self.fingerprint,
            "kind": self.kind,
            "state": state,
            "company": self.company,
            "reference": self.reference,
            "payroll_period": self.payroll_period,
            "period_id": self.period_id,
            "administration": self.administration,
            "lines": self.lines,
            "debit": self.debit,
            "credit": self.credit,
            "reverses": self.reverses,
        }
        return PostingEntry(**{**fields, **changes})


@dataclass(frozen=True)
class Booked:
    """A transaction Visma.net holds (or the ledger says it holds) under a key, with one content."""

    batch_number: str
    period_id: str
    lines: int
    debit: Decimal
    credit: Decimal
    released: bool | None  # None: not known (the ledger did not record it, the listing was not read)


class Listed:
    """The periods' listings, by the markers their transactions carry."""

    def __init__(self, summaries: Sequence[JournalTransactionSummary]) -> None:
        self.by_key: dict[str, dict[str, Booked]] = defaultdict(dict)
        self.by_fingerprint: dict[str, list[tuple[str, Booked]]] = defaultdict(list)
        for summary in sorted(summaries, key=lambda s: s.batch_number):
            marker = read_marker(summary.description)
            if marker is None:
                continue
            booked = Booked(
                summary.batch_number,
                summary.financial_period,
                summary.line_count,
                summary.debit,
                summary.credit,
                summary.status in RELEASED_STATUSES,
            )
            self.by_key[marker.key].setdefault(marker.fingerprint, booked)
            self.by_fingerprint[marker.fingerprint].append((marker.key, booked))


@dataclass
class _Decision:
    """What one key needs: a final row, or creates to run (in order: a reversal before the new content)."""

    rows: list[StatusRow] = field(default_factory=list)
    creates: list[Posting] = field(default_factory=list)
    writes: list[PostingEntry] = field(default_factory=list)  # adoptions and lost intents, written first
    releases: list[tuple[Posting, Booked]] = field(default_factory=list)


class AdministrationPoster:
    """Posts the postings of one administration through one client, against one ledger.

    `administration_lock` is the lock every worker of the administration takes (the Prefect server's);
    `sending` bounds the run's creates at once; `repost_changed` reverses and reposts a changed key; `settle`:
    seconds an unanswered create may take to show in the listing (the run's `Settings.settle_seconds`)."""

    def __init__(
        self,
        client: LedgerClient,
        ledger: PostingLedger,
        *,
        flow_run_id: str | None = None,
        sending: AbstractContextManager[object] | None = None,
        administration_lock: AdministrationLock | None = None,
        repost_changed: bool = False,
        settle: float = DEFAULT_SETTLE_SECONDS,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.flow_run_id = flow_run_id
        self.sending = sending
        self.administration_lock = administration_lock
        self.repost_changed = repost_changed
        self.settle = settle
        self.clock = clock

    # -- the whole administration ---------------------------------------------------------------------------

    def post(self, postings: Sequence[Posting]) -> list[StatusRow]:
        """Post what is not sent yet; every posting gets exactly one row (a reposted key gets its reversal's too)."""
        if not postings:
            return []
        try:
            known = self.ledger.entries(p.key for p in postings)
        except LedgerUnavailable as exc:
            return [p.row(Status.FAILED, reason=f"{exc}; nothing sent") for p in postings]
        rows: list[StatusRow] = []
        pending: list[Posting] = []
        for posting in postings:
            done = _settled(posting, known.get(posting.key, []))
            if done is not None:
                rows.append(posting.row(Status.ALREADY_SENT, batch_number=done.batch_number, period=done.period_id))
            else:
                pending.append(posting)
        if pending:
            rows.extend(self._post_locked(pending))
        return rows

    def _post_locked(self, pending: list[Posting]) -> list[StatusRow]:
        administration = pending[0].administration
        lock = self.administration_lock(administration) if self.administration_lock else nullcontext()
        try:
            with lock, self.ledger.holding(p.key for p in pending) as held:
                return self._decide_all(pending, held)
        except (LockTimeout, LedgerUnavailable) as exc:
            return [p.row(Status.FAILED, reason=f"{exc}; nothing sent") for p in pending]
        except Exception as exc:
            if not _is_lock_error(exc):
                raise
            reason = f"the Prefect server's lock of administration {administration} was not granted ({exc})"
            return [p.row(Status.FAILED, reason=f"{reason}; nothing sent") for p in pending]

    def _decide_all(self, pending: list[Posting], held: HeldKeys) -> list[StatusRow]:
        entries = held.entries()
        periods = {p.period_id for p in pending} | {p.payroll_period for p in pending}
        periods |= {e.period_id for p in pending for e in entries.get(p.key, [])}
        listings = self._listings(sorted(periods))
        unreadable = {period: error for period, error in listings.items() if isinstance(error, ApiError)}
        listed = Listed([s for found in listings.values() if not isinstance(found, ApiError) for s in found])
        reversal_keys = {
            reversal_key(p.key, e.fingerprint) for p in pending for e in entries.get(p.key, []) if e.kind == "journal"
        }
        reversal_keys |= {reversal_key(p.key, fp) for p in pending for fp in listed.by_key.get(p.key, {})}
        reversals = held.entries_of(sorted(reversal_keys)) if reversal_keys else {}
        rows: list[StatusRow] = []
        decisions: list[_Decision] = []
        for posting in sorted(pending, key=lambda p: (p.period_id, p.key)):
            missing = [period for period in (posting.period_id, posting.payroll_period) if period in unreadable]
            if missing:
                reason = f"could not look up period {missing[0]} in Visma.net before posting ({unreadable[missing[0]]})"
                rows.append(posting.row(Status.FAILED, reason=f"{reason}; nothing sent"))
                continue
            decisions.append(self._decide(posting, entries.get(posting.key, []), reversals, listed))
        rows.extend(row for decision in decisions for row in decision.rows)
        try:
            held.put(*(entry for decision in decisions for entry in decision.writes))
        except LedgerUnavailable as exc:
            return [*rows, *(p.row(Status.FAILED, reason=f"{exc}; nothing sent") for d in decisions for p in d.creates)]
        rows.extend(self._release_again(posting, booked, held) for d in decisions for posting, booked in d.releases)
        creates = [decision.creates for decision in decisions if decision.creates]
        if creates:
            with self.sending if self.sending is not None else nullcontext():  # only the creates hold a slot
                created = self._run_creates(creates, held)
            rows.extend(self._written(created, held))
        return rows

    def _written(self, rows: list[StatusRow], held: HeldKeys) -> list[StatusRow]:
        """The last outcomes held back (`later`) written, outside the sending slot; the rows say when not."""
        unwritten = {entry.batch_number for entry in held.unwritten}
        try:
            held.flush()
        except LedgerUnavailable as exc:
            for position, row in enumerate(rows):
                if row.status is Status.SENT and row.batch_number in unwritten:
                    note = f"booked as batch {row.batch_number}, but {exc}; the next run adopts it by its key"
                    rows[position] = row.model_copy(update={"reason": "; ".join(filter(None, [row.reason, note]))})
        return rows

    # -- one key --------------------------------------------------------------------------------------------

    def _decide(
        self, posting: Posting, rows: list[PostingEntry], reversals: dict[str, list[PostingEntry]], listed: Listed
    ) -> _Decision:
        decision = _Decision()
        booked = _booked(posting.key, rows, listed)
        undone = {fp for fp in booked if _reversal(posting.key, fp, reversals, listed) is not None}
        live = {fp: b for fp, b in booked.items() if fp not in undone}
        waiting, lost = self._unanswered(
            [e for e in rows if e.fingerprint not in booked], "create of this journal", "posted only if still absent"
        )
        decision.writes.extend(lost)
        if waiting is not None:
            decision.rows.append(posting.row(Status.PENDING, reason=waiting))
            return decision
        for fingerprint, found in booked.items():  # the ledger learns what Visma.net holds
            if not any(e.fingerprint == fingerprint and e.state is PostingState.SENT for e in rows):
                adopted = posting if fingerprint == posting.fingerprint else replace(posting, fingerprint=fingerprint)
                decision.writes.append(self._entry(adopted, PostingState.SENT, found, "found in Visma.net by its key"))
        if posting.fingerprint in live:
            found = live[posting.fingerprint]
            if posting.release and found.released is False:
                decision.releases.append((posting, found))
            else:
                reason = "" if _recorded(posting, rows) else "found in Visma.net by its key (not sent again)"
                decision.rows.append(self._already(posting, found, reason))
            return decision
        if not live:
            if posting.fingerprint in booked:
                undo = _reversal(posting.key, posting.fingerprint, reversals, listed)
                reason = (
                    f"this content was booked as batch {booked[posting.fingerprint].batch_number} and reversed as "
                    f"batch {undo.batch_number if undo else '?'}; not booked again automatically"
                )
                decision.rows.append(posting.row(Status.REFUSED, reason=reason, codes=("reversed_before",)))
                return decision
            twin = _same_content(posting, listed)
            if twin is not None:
                key, found = twin
                reason = (
                    f"the same journal is already booked as batch {found.batch_number} in {found.period_id} "
                    f"under another run or source (key {key}); not sent again"
                )
                decision.rows.append(posting.row(Status.REFUSED, reason=reason, codes=("duplicate_content",)))
                return decision
            decision.creates.append(posting)
            return decision
        if len(live) > 1:
            batches = ", ".join(sorted(b.batch_number for b in live.values()))
            reason = f"several transactions of this journal are live in Visma.net (batches {batches}); resolve by hand"
            decision.rows.append(posting.row(Status.REFUSED, reason=reason, codes=("several_live",)))
            return decision
        ((old_fingerprint, old),) = live.items()
        if not self.repost_changed:
            reason = (
                f"changed since it was sent as batch {old.batch_number} in {old.period_id}: debit {old.debit:.2f} -> "
                f"{posting.debit:.2f}, credit {old.credit:.2f} -> {posting.credit:.2f}; nothing sent (repost changed "
                f"journals to reverse batch {old.batch_number} and post this one)"
            )
            decision.rows.append(posting.row(Status.CHANGED, batch_number=old.batch_number, reason=reason))
            return decision
        waiting, lost = self._unanswered(  # a reversal that never answered: the live batch may be undone already
            reversals.get(reversal_key(posting.key, old_fingerprint), []),
            f"reversal of batch {old.batch_number}",
            "reversed and reposted only if still absent",
        )
        decision.writes.extend(lost)
        if waiting is not None:
            decision.rows.append(posting.row(Status.PENDING, batch_number=old.batch_number, reason=waiting))
            return decision
        decision.creates.extend([self._reversal_posting(posting, old_fingerprint, old), posting])
        return decision

    def _unanswered(
        self, entries: Sequence[PostingEntry], what: str, then: str
    ) -> tuple[str | None, list[PostingEntry]]:
        """Intents Visma.net does not list: the reason to wait while one is younger than the settle time (a
        lagging listing), else those rows marked lost (their create never booked)."""
        now = self.clock()
        lost: list[PostingEntry] = []
        for entry in entries:
            if entry.state is not PostingState.INTENT:
                continue
            settled_at = entry.updated_at + dt.timedelta(seconds=self.settle)
            if now < settled_at:
                when = settled_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
                return (
                    f"an earlier {what} ({entry.holder}, {entry.updated_at:%H:%M:%S} UTC) has no known outcome and "
                    f"Visma.net does not list it yet; not sent again: it is looked up again from {when} (the settle "
                    f"time), and {then}"
                ), []
            message = "not listed by Visma.net within the settle time after its create; treated as not booked"
            lost.append(entry.model_copy(update={"state": PostingState.LOST, "message": message}))
        return None, lost

    def _reversal_posting(self, posting: Posting, fingerprint: str, old: Booked) -> Posting:
        """The reversal of the live batch `old` as a posting; built when its turn comes (`_run_creates`)."""
        return replace(
            posting,
            key=reversal_key(posting.key, fingerprint),
            fingerprint=reversal_fingerprint(fingerprint),
            kind="reversal",
            reverses=old.batch_number,
            undoes=(posting.key, fingerprint),
            period_id=old.period_id,
            lines=0,
            debit=old.credit,
            credit=old.debit,
            payload=b"",
            note=f"reverses batch {old.batch_number} (the journal changed since it was sent)",
        )

    # -- creates --------------------------------------------------------------------------------------------

    def _run_creates(self, creates: list[list[Posting]], held: HeldKeys) -> list[StatusRow]:
        rows: list[StatusRow] = []
        broken: str | None = None  # the ledger failed: nothing more is created in this task
        for chain in creates:
            for position, posting in enumerate(chain):
                if broken is not None:
                    rows.append(posting.row(Status.FAILED, reason=f"{broken}; not sent: the next run looks it up"))
                    continue
                try:
                    row, ok = self._create(posting, held)
                except _LedgerBroke as exc:
                    broken = exc.reason
                    row, ok = exc.row, False
                rows.append(row)
                if not ok:
                    for rest in chain[position + 1 :]:  # a new journal never goes without its reversal
                        reason = f"not sent: the reversal of batch {posting.reverses} is not booked ({row.status})"
                        rows.append(rest.row(row.status, reason=reason))
                    break
        return rows

    def _create(self, posting: Posting, held: HeldKeys) -> tuple[StatusRow, bool]:
        """One create: intent, POST, outcome. (row, whether it is booked)."""
        if posting.kind == "reversal":
            try:
                posting = self._with_reversal_payload(posting)
            except ApiError as exc:
                reason = f"could not read batch {posting.reverses} to reverse it ({exc}); nothing sent"
                return posting.row(Status.FAILED, reason=reason), False
        self._put(held, self._entry(posting, PostingState.INTENT), posting, "before the create")
        try:
            batch = self.client.create_journal_transaction(posting.payload)
        except ApiError as exc:
            if exc.outcome_unknown:  # the create may have been committed: look it up, never send it again
                return self._after_lost_answer(posting, exc, held)
            self._put(held, self._entry(posting, PostingState.REJECTED, message=str(exc)), posting, None)
            if posting.kind == "reversal":  # e.g. the original's period is closed by now
                reason = f"Visma.net refused the reversal of batch {posting.reverses}: {exc}"
                return posting.row(Status.REFUSED, reason=reason, codes=("reversal_refused",)), False
            said = "Visma.net refused the transaction" if exc.status is not None else "the create was not sent"
            return posting.row(Status.FAILED, reason=f"{said}: {exc}"), False
        plain = posting.kind == "journal" and posting.undoes is None  # a repost's rows are written at once
        self._put(held, self._entry(posting, PostingState.SENT, batch=batch), posting, batch, later=plain)
        if posting.undoes is not None:
            try:
                held.mark_reversed(*posting.undoes, by=batch)
            except LedgerUnavailable as exc:
                raise _LedgerBroke(str(exc), posting.row(Status.SENT, batch_number=batch, reason=str(exc))) from None
        return self._release(posting, batch, held, ""), True

    def _with_reversal_payload(self, posting: Posting) -> Posting:
        assert posting.reverses is not None
        original = self.client.journal_transaction(posting.reverses)
        description = _MARKER_TEXT.sub("", str(original.get("description") or "")).strip()
        marker = key_marker(posting.key, posting.fingerprint)
        reversal = reversal_of(
            original, description=f"Reversal of batch {posting.reverses}: {description} {marker}", hold=False
        )
        return replace(
            posting,
            period_id=reversal.period_id,
            lines=reversal.lines,
            debit=reversal.debit,
            credit=reversal.credit,
            payload=reversal.payload,
        )

    def _after_lost_answer(self, posting: Posting, error: ApiError, held: HeldKeys) -> tuple[StatusRow, bool]:
        logger.warning(
            "create of %s (company %s): answer lost (%s); looking it up", posting.key, posting.company, error
        )
        try:
            found = Listed(self.client.list_journal_transactions(posting.period_id, module="GL")).by_key.get(
                posting.key, {}
            )
        except ApiError as lookup_error:
            found, error = {}, ApiError(None, "LookUpFailed", f"{error}; the look-up after it failed: {lookup_error}")
        booked = found.get(posting.fingerprint)
        if booked is None:
            reason = (
                f"the answer to the create was lost ({error}) and Visma.net does not list the transaction yet; not "
                f"sent again: looked up again after the settle time ({self.settle:.0f}s), posted only if still absent"
            )
            return posting.row(Status.PENDING, reason=reason), False
        self._put(held, self._entry(posting, PostingState.SENT, booked, "answer lost; found by key"), posting, None)
        return self._release(posting, booked.batch_number, held, "answer lost; found in Visma.net by its key"), True

    def _release(self, posting: Posting, batch: str, held: HeldKeys, reason: str) -> StatusRow:
        if not posting.release:
            return posting.row(Status.SENT, batch_number=batch, reason=reason)
        try:
            self.client.release_journal_transaction(batch)
        except ApiError as exc:
            note = f"created, but the release failed ({exc}); the next run releases it"
            return posting.row(Status.SENT, batch_number=batch, reason="; ".join(filter(None, [reason, note])))
        self._put(
            held,
            self._entry(posting, PostingState.SENT, batch=batch, released=True),
            posting,
            batch,
            later=posting.kind == "journal" and posting.undoes is None,
        )
        return posting.row(Status.SENT, batch_number=batch, reason="; ".join(filter(None, [reason, "released"])))

    def _release_again(self, posting: Posting, booked: Booked, held: HeldKeys) -> StatusRow:
        """A key sent but not released (its release failed): released now, and reported so."""
        try:
            self.client.release_journal_transaction(booked.batch_number)
        except ApiError as exc:
            reason = f"sent before, not released: the release failed again ({exc}); the next run tries again"
            return posting.row(Status.FAILED, batch_number=booked.batch_number, reason=reason, period=booked.period_id)
        try:
            held.put(self._entry(posting, PostingState.SENT, booked, "released by a later run", released=True))
        except LedgerUnavailable as exc:
            logger.warning("released batch %s but could not record it: %s", booked.batch_number, exc)
        return self._already(posting, booked, "sent before; released now (the earlier release had failed)")

    # -- helpers --------------------------------------------------------------------------------------------

    def _put(
        self, held: HeldKeys, entry: PostingEntry, posting: Posting, batch: str | None, *, later: bool = False
    ) -> None:
        """Write one row (`later`: with the next write, see `HeldKeys.put`); a ledger that fails stops the
        task's creates (its locks may be gone with it)."""
        try:
            held.put(entry, later=later)
        except LedgerUnavailable as exc:
            if entry.state is PostingState.INTENT:
                raise _LedgerBroke(str(exc), posting.row(Status.FAILED, reason=f"{exc}; not sent")) from None
            if batch is None:
                reason = f"{exc}: the outcome is not recorded; the next run looks it up"
                raise _LedgerBroke(str(exc), posting.row(Status.FAILED, reason=reason)) from None
            reason = f"booked as batch {batch}, but {exc}; the next run adopts it by its key"
            raise _LedgerBroke(str(exc), posting.row(Status.SENT, batch_number=batch, reason=reason)) from None

    def _entry(
        self,
        posting: Posting,
        state: PostingState,
        found: Booked | None = None,
        message: str = "",
        *,
        batch: str | None = None,
        released: bool | None = None,
    ) -> PostingEntry:
        totals = {} if found is None else {"lines": found.lines, "debit": found.debit, "credit": found.credit}
        return posting.entry(
            state,
            **totals,
            batch_number=batch if found is None else found.batch_number,
            period_id=posting.period_id if found is None else found.period_id,
            released=bool(released if released is not None else (found.released if found else False)),
            message=message,
            holder=holder_name(),
            flow_run_id=self.flow_run_id,
        )

    def _already(self, posting: Posting, found: Booked, reason: str) -> StatusRow:
        return posting.row(Status.ALREADY_SENT, batch_number=found.batch_number, reason=reason, period=found.period_id)

    def _listings(self, period_ids: list[str]) -> dict[str, list[JournalTransactionSummary] | ApiError]:
        """Each period's listing, the periods at once (one read's latency under the keys' locks)."""

        def listing(period_id: str) -> list[JournalTransactionSummary] | ApiError:
            try:
                return self.client.list_journal_transactions(period_id, module="GL")
            except ApiError as exc:
                return exc

        listed = at_once([partial(listing, period_id) for period_id in period_ids], most=LISTINGS_AT_ONCE)
        return dict(zip(period_ids, listed, strict=True))


_MARKER_TEXT = re.compile(r"\s*\[nv:[0-9a-f:]+\]")


class _LedgerBroke(Exception):
    def __init__(self, reason: str, row: StatusRow) -> None:
        super().__init__(reason)
        self.reason = reason
        self.row = row


def _settled(posting: Posting, rows: list[PostingEntry]) -> Booked | None:
    """The ledger alone says this key is done: its content sent (and released when it must be), no other
    content sent under it since; None when the locks and a look-up must decide."""
    booked = [e for e in rows if e.state in BOOKED_STATES and e.kind == "journal"]
    mine = next((e for e in booked if e.fingerprint == posting.fingerprint), None)
    if mine is None or mine.state is not PostingState.SENT or mine.batch_number is None or len(booked) > 1:
        return None
    if posting.release and not mine.released:
        return None
    return Booked(mine.batch_number, mine.period_id, mine.lines, mine.debit, mine.credit, mine.released)


def _recorded(posting: Posting, rows: list[PostingEntry]) -> bool:
    return any(e.fingerprint == posting.fingerprint and e.state is PostingState.SENT for e in rows)


def _booked(key: str, rows: list[PostingEntry], listed: Listed) -> dict[str, Booked]:
    """Every content Visma.net holds under `key`: what the listing shows, and what the ledger recorded as sent."""
    booked: dict[str, Booked] = {}
    for entry in rows:
        if entry.state in BOOKED_STATES and entry.kind == "journal" and entry.batch_number:
            booked[entry.fingerprint] = Booked(
                entry.batch_number, entry.period_id, entry.lines, entry.debit, entry.credit, entry.released
            )
    for fingerprint, found in listed.by_key.get(key, {}).items():
        recorded = booked.get(fingerprint)
        released = found.released or bool(recorded and recorded.released)
        booked[fingerprint] = replace(found, released=released)
    return booked


def _reversal(key: str, fingerprint: str, reversals: dict[str, list[PostingEntry]], listed: Listed) -> Booked | None:
    """The reversal of content `fingerprint` under `key`, when one is booked."""
    undo_key, undo_fingerprint = reversal_key(key, fingerprint), reversal_fingerprint(fingerprint)
    found = listed.by_key.get(undo_key, {}).get(undo_fingerprint)
    if found is not None:
        return found
    for entry in reversals.get(undo_key, []):
        if entry.state is PostingState.SENT and entry.batch_number:
            return Booked(entry.batch_number, entry.period_id, entry.lines, entry.debit, entry.credit, entry.released)
    return None


def _same_content(posting: Posting, listed: Listed) -> tuple[str, Booked] | None:
    """A live transaction of another key with exactly this content (same company, payroll period and lines)."""
    for key, found in listed.by_fingerprint.get(posting.fingerprint, []):
        if key != posting.key and reversal_key(key, posting.fingerprint) not in listed.by_key:
            return key, found
    return None


def _is_lock_error(exc: Exception) -> bool:
    from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError

    return isinstance(exc, AcquireConcurrencySlotTimeoutError | ConcurrencySlotAcquisitionError)


@contextmanager
def prefect_administration_lock(administration: str, *, timeout_seconds: float) -> Iterator[None]:
    """Hold the administration's lock on the Prefect server (created on demand, strict)."""
    from nmbrs_visma.blocks.locks import server_lock

    with server_lock(administration_lock_name(administration), timeout_seconds=timeout_seconds):
        yield


def _held(reservation: Reservation, _administration: str) -> AbstractContextManager[object]:
    return reservation.hold()


@task(name="post-administration", cache_policy=NO_CACHE, task_run_name="post-{administration}")
def post_administration(
    administration: str,
    postings: list[Posting],
    client: LedgerClient,
    ledger: PostingLedger,
    flow_run_id: str | None = None,
    sending: AbstractContextManager[object] | None = None,
    repost_changed: bool = False,
    reservation: Reservation | None = None,
    settle_seconds: float = DEFAULT_SETTLE_SECONDS,
) -> list[StatusRow]:
    """Prefect task: one administration's transactions (the unit of visibility). Not retried by Prefect: the
    ledger and the look-up decide every key, and a retry would only repeat that. `reservation`: the
    administration's lock asked for ahead by the flow (held here if needed, else given up); `settle_seconds`:
    the run's settle time; the lock waits are the ledger's `lock_timeout`."""
    lock: AdministrationLock = partial(prefect_administration_lock, timeout_seconds=ledger.lock_timeout)
    if reservation is not None:
        lock = partial(_held, reservation)
    poster = AdministrationPoster(
        client,
        ledger,
        flow_run_id=flow_run_id,
        sending=sending,
        administration_lock=lock,
        repost_changed=repost_changed,
        settle=settle_seconds,
    )
    try:
        return poster.post(postings)
    finally:
        if reservation is not None:
            reservation.cancel()  # nothing to post: the lock was never needed
