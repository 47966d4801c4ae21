"""Post one administration's journal transactions exactly once: the record first, a look-up when in doubt.

For the transactions of one administration:
1. a key the record holds as sent is reported "already sent" without any API call (a routine re-run is free);
2. the other keys' periods are looked up in ONE listing per financial period of the GL transactions (the
   periods listed at once), matching each key's marker in the description. The flow does this ahead, while
   the administration waits for a posting slot (`look_up`), so the slot is spent on creates;
3. the keys are locked (all at once, in sorted order, so concurrent runs wait for each other instead of
   racing) and re-read under the lock. A key no run has attempted (no entry: every create is preceded by an
   intent in the shared record) is decided on the listing read ahead; a key with an entry, or whose period
   could not be read ahead, is looked up again now, under the lock;
4. period by period, a key found is recorded as sent; the keys absent are recorded as intents (all of them
   before the first create), then created one by one, each outcome recorded as sent while the next create is
   out (all written before the locks are let go). The creates wait for a sending slot (`sending`, shared by
   the run's posting tasks: the administrations creating at once), so steps 3 and 4 up to the first create,
   and the writes after the last, happen while other administrations hold the slots.
A create whose answer is lost (time-out, reset, 5xx) is never sent again blindly: the period is listed again,
and a transaction found is recorded as sent; one not found is reported failed and keeps its intent, so the next
run looks it up once more (by then a late commit shows) before it posts.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE

from nmbrs_visma.clients.http import ApiError, ServerError, TransportError
from nmbrs_visma.fan_out import at_once, in_background
from nmbrs_visma.journals.keys import extract_key
from nmbrs_visma.posting_record import LockTimeout, PostingEntry, PostingRecord, PostingState
from nmbrs_visma.results import Status, StatusRow

if TYPE_CHECKING:
    from nmbrs_visma.clients.visma_net import JournalTransactionSummary

logger = logging.getLogger(__name__)

AMBIGUOUS_ERRORS = (ServerError, TransportError)  # the create may have been committed
Listings = dict[str, dict[str, "JournalTransactionSummary"]]  # period -> key -> what Visma.net holds for it
LISTINGS_AT_ONCE = 4  # periods of one administration looked up at once (well inside a tenant's rate budget)


class LedgerClient(Protocol):
    """The part of `VismaNetClient` posting needs."""

    def create_journal_transaction(self, payload: bytes) -> str: ...

    def list_journal_transactions(self, period_id: str, *, module: str = "GL") -> list[JournalTransactionSummary]: ...

    def release_journal_transaction(self, batch_number: str) -> None: ...


@dataclass(frozen=True)
class Posting:
    """One journal transaction ready to post: its key, what it books, and the exact payload bytes."""

    key: str
    company: int
    company_name: str
    run_id: str
    reference: str
    administration: str
    period_id: str
    lines: int
    debit: Decimal
    credit: Decimal
    payload: bytes
    release: bool = False
    note: str = ""  # e.g. booked in the first open period after a closed one

    def row(self, status: Status, *, batch_number: str | None = None, reason: str = "") -> StatusRow:
        reason = "; ".join(part for part in (self.note, reason) if part)
        return StatusRow(
            company=self.company,
            company_name=self.company_name,
            administration=self.administration,
            period=self.period_id,
            reference=self.reference,
            lines=self.lines,
            debit=self.debit,
            credit=self.credit,
            batch_number=batch_number,
            status=status,
            reason=reason,
        )

    def entry(self, state: PostingState, **changes: object) -> PostingEntry:
        return PostingEntry(
            key=self.key,
            state=state,
            company=self.company,
            run_id=self.run_id,
            reference=self.reference,
            administration=self.administration,
            period_id=self.period_id,
            lines=self.lines,
            debit=self.debit,
            credit=self.credit,
            **changes,  # type: ignore[arg-type]
        )


class AdministrationPoster:
    """Posts the postings of one administration through one client, against one record; its creates wait for
    `sending` (a semaphore the run's posting tasks share) when given."""

    def __init__(
        self,
        client: LedgerClient,
        record: PostingRecord,
        *,
        flow_run_id: str | None = None,
        sending: AbstractContextManager[object] | None = None,
    ) -> None:
        self.client = client
        self.record = record
        self.flow_run_id = flow_run_id
        self.sending = sending

    def look_up(self, postings: Sequence[Posting]) -> Listings:
        """What Visma.net holds in the periods of the keys not recorded as sent, read before the keys' locks
        (see the module's step 3 for why that is safe); a period that cannot be read is left out."""
        periods = sorted({p.period_id for p in postings if not _is_sent(self.record.peek(p.key))})
        return {
            period_id: listed
            for period_id, listed in self._listings(periods, together=False).items()
            if not isinstance(listed, ApiError)
        }

    def post(self, postings: Sequence[Posting], looked_up: Listings | None = None) -> list[StatusRow]:
        """Post what is not sent yet; `looked_up` is `look_up`'s answer when the flow read it ahead."""
        rows: list[StatusRow] = []
        pending: list[Posting] = []
        for posting in postings:
            # sent is final; anything else is decided under the lock (where a key sent since is caught too, so
            # after a look-up ahead, which peeked already, this pass is skipped)
            entry = self.record.peek(posting.key) if looked_up is None else None
            if _is_sent(entry):
                rows.append(_already_sent(posting, entry))
            else:
                pending.append(posting)
        if not pending:
            return rows
        try:
            with self.record.holding(posting.key for posting in pending) as holder:
                rows.extend(self._decide(pending, holder, looked_up or {}))
        except LockTimeout as exc:
            rows.extend(posting.row(Status.FAILED, reason=str(exc)) for posting in pending)
        return rows

    def _decide(self, pending: list[Posting], holder: str, looked_up: Listings) -> list[StatusRow]:
        rows: list[StatusRow] = []
        by_period: dict[str, list[Posting]] = defaultdict(list)
        again: set[str] = set()  # periods to look up now, under the lock
        for posting in pending:
            entry = self.record.get(posting.key, holder)
            if _is_sent(entry):  # another run finished it while we waited
                rows.append(_already_sent(posting, entry))
                continue
            by_period[posting.period_id].append(posting)
            if entry is not None or posting.period_id not in looked_up:  # attempted before, or not read ahead
                again.add(posting.period_id)
        listings: dict[str, dict[str, JournalTransactionSummary] | ApiError] = {
            period_id: looked_up[period_id] for period_id in by_period if period_id not in again
        }
        listings.update(self._listings(sorted(again)))
        decided: list[tuple[Posting, JournalTransactionSummary | None]] = []
        for period_id in sorted(by_period):
            listed = listings[period_id]
            if isinstance(listed, ApiError):
                reason = f"could not look up period {period_id} in Visma.net before posting ({listed}); nothing sent"
                rows.extend(posting.row(Status.FAILED, reason=reason) for posting in by_period[period_id])
                continue
            decided.extend((posting, listed.get(posting.key)) for posting in by_period[period_id])
        # every intent on storage before the first create leaves (together: one write's wait, not one per create);
        # the outcomes are written while the next create is out, and all of them before the locks are let go
        absent = [posting for posting, found in decided if found is None]
        at_once([partial(self._write, posting.entry(PostingState.INTENT), holder) for posting in absent])
        outcomes: list[Future[None]] = []
        slot = self.sending if absent and self.sending is not None else nullcontext()
        try:
            with slot:  # only the API calls hold a sending slot
                for posting, found in decided:
                    if found is not None:
                        rows.append(self._adopt(posting, found, holder))
                    else:
                        rows.append(self._create(posting, holder, outcomes))
        finally:
            wait(outcomes)
        for outcome in outcomes:
            outcome.result()  # a record that could not be written fails the task: the next run looks it up
        return rows

    def _listings(
        self, period_ids: list[str], *, together: bool = True
    ) -> dict[str, dict[str, JournalTransactionSummary] | ApiError]:
        """Each period's listing; `together`: the periods at once, one read's latency (under the keys' locks,
        where time counts); else one after another, in this thread (ahead of the posting, where it does not)."""

        def listing(period_id: str) -> dict[str, JournalTransactionSummary] | ApiError:
            try:
                return self._listing(period_id)
            except ApiError as exc:
                return exc

        if not together:
            return {period_id: listing(period_id) for period_id in period_ids}
        listed = at_once([partial(listing, period_id) for period_id in period_ids], most=LISTINGS_AT_ONCE)
        return dict(zip(period_ids, listed, strict=True))

    def _listing(self, period_id: str) -> dict[str, JournalTransactionSummary]:
        """The period's GL transactions (one listing, all pages), by the posting key their description carries."""
        summaries = self.client.list_journal_transactions(period_id, module="GL")
        return {key: summary for summary in summaries if (key := extract_key(summary.description)) is not None}

    def _adopt(self, posting: Posting, found: JournalTransactionSummary, holder: str) -> StatusRow:
        """Visma.net already holds this key's transaction (an earlier run's answer was lost): record it."""
        batch = found.batch_number
        self._write(posting.entry(PostingState.SENT, batch_number=batch, message="found in Visma.net"), holder)
        return posting.row(
            Status.ALREADY_SENT, batch_number=batch, reason="found in Visma.net by its key (not sent again)"
        )

    def _create(self, posting: Posting, holder: str, outcomes: list[Future[None]]) -> StatusRow:
        """Create the transaction (its intent is already recorded); the sent outcome is written in the background
        (into `outcomes`), unless a release follows, which needs it first."""
        try:
            batch = self.client.create_journal_transaction(posting.payload)
        except ApiError as exc:
            if isinstance(exc, AMBIGUOUS_ERRORS) or exc.code == "NoLocation":
                return self._after_lost_answer(posting, exc, holder)
            self._write(posting.entry(PostingState.REJECTED, message=str(exc)), holder)
            return posting.row(Status.FAILED, reason=f"Visma.net refused the transaction: {exc}")
        sent = posting.entry(PostingState.SENT, batch_number=batch)
        if posting.release:
            self._write(sent, holder)
            return self._release(posting, batch, holder, Status.SENT, "")
        outcomes.append(in_background(partial(self._write, sent, holder)))
        return posting.row(Status.SENT, batch_number=batch)

    def _after_lost_answer(self, posting: Posting, error: ApiError, holder: str) -> StatusRow:
        logger.warning(
            "create of %s for company %s: answer lost (%s); looking it up", posting.key, posting.company, error
        )
        try:
            found = self._listing(posting.period_id).get(posting.key)
        except ApiError as lookup_error:
            return posting.row(
                Status.FAILED,
                reason=(
                    f"the answer to the create was lost ({error}) and the look-up failed ({lookup_error}); "
                    "not sent again: the next run looks it up before posting"
                ),
            )
        if found is None:
            return posting.row(
                Status.FAILED,
                reason=(
                    f"the answer to the create was lost ({error}) and Visma.net does not show the transaction; "
                    "not sent again: the next run looks it up before posting"
                ),
            )
        batch = found.batch_number
        self._write(posting.entry(PostingState.SENT, batch_number=batch, message="answer lost; found by key"), holder)
        return self._release(posting, batch, holder, Status.SENT, "answer lost; found in Visma.net by its key")

    def _release(self, posting: Posting, batch: str, holder: str, status: Status, reason: str) -> StatusRow:
        if not posting.release:
            return posting.row(status, batch_number=batch, reason=reason)
        try:
            self.client.release_journal_transaction(batch)
        except ApiError as exc:
            note = f"created, but the release failed ({exc}); release batch {batch} in Visma.net"
            return posting.row(status, batch_number=batch, reason="; ".join(filter(None, [reason, note])))
        self._write(posting.entry(PostingState.SENT, batch_number=batch, released=True), holder)
        return posting.row(status, batch_number=batch, reason="; ".join(filter(None, [reason, "released"])))

    def _write(self, entry: PostingEntry, holder: str) -> None:
        self.record.put(entry.model_copy(update={"flow_run_id": self.flow_run_id}), holder)


def _is_sent(entry: PostingEntry | None) -> bool:
    return entry is not None and entry.state is PostingState.SENT


def _already_sent(posting: Posting, entry: PostingEntry) -> StatusRow:
    return posting.row(Status.ALREADY_SENT, batch_number=entry.batch_number)


@task(name="post-administration", cache_policy=NO_CACHE, task_run_name="post-{administration}")
def post_administration(
    administration: str,
    postings: list[Posting],
    client: LedgerClient,
    record: PostingRecord,
    flow_run_id: str | None = None,
    looked_up: Listings | None = None,
    sending: AbstractContextManager[object] | None = None,
) -> list[StatusRow]:
    """Prefect task: one administration's transactions (the unit of visibility). Not retried by Prefect: the
    record and the look-up decide every key, and a retry would only repeat that."""
    poster = AdministrationPoster(client, record, flow_run_id=flow_run_id, sending=sending)
    return poster.post(postings, looked_up)
