"""The look-up read ahead of the posting slot (tasks/posting.py, step 3), and the sending slots the creates wait
for (step 4), against an in-memory ledger.

A unit test of one component, the poster's decisions: the ledger here is a plain fake with the two calls the
poster makes. What must hold: a key nobody attempted is decided on the listing read ahead (no second listing);
a key another run attempted after that listing (an intent in the shared record) is looked up again under the
lock and never created twice; a period that could not be read ahead is looked up under the lock. A poster
waiting for a sending slot already holds its keys' locks and has written its intents; the slots bound the
administrations creating at once.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

from nmbrs_visma.clients.visma_net import JournalTransactionSummary
from nmbrs_visma.journals.keys import key_marker, posting_key
from nmbrs_visma.posting_record import PostingRecord, PostingState, storage_key
from nmbrs_visma.results import Status
from nmbrs_visma.tasks.posting import AdministrationPoster, Posting


class FakeLedger:
    """Creates and listings only; every call counted."""

    def __init__(self) -> None:
        self.transactions: dict[str, JournalTransactionSummary] = {}
        self.creates = 0
        self.listings: list[str] = []

    def create(self, description: str, period_id: str) -> str:
        self.creates += 1
        batch = f"{len(self.transactions) + 1:06d}"
        self.transactions[batch] = JournalTransactionSummary(
            batch_number=batch,
            description=description,
            financial_period=period_id,
            status="Balanced",
            line_count=2,
            debit=Decimal("10.00"),
            credit=Decimal("10.00"),
        )
        return batch

    def create_journal_transaction(self, payload: bytes) -> str:
        description, period_id = payload.decode().split("|")
        return self.create(description, period_id)

    def list_journal_transactions(self, period_id: str, *, module: str = "GL") -> list[JournalTransactionSummary]:
        self.listings.append(period_id)
        return [summary for summary in self.transactions.values() if summary.financial_period == period_id]

    def release_journal_transaction(self, batch_number: str) -> None:  # pragma: no cover - release is off here
        raise AssertionError("not released in these tests")


def _posting(period_id: str, administration: str = "1000001/1/L") -> Posting:
    key = posting_key(1001, "run-1", period_id, administration)
    description = f"Payroll 1001 {key_marker(key)}"
    return Posting(
        key=key,
        company=1001,
        company_name="Demo BV",
        run_id="run-1",
        reference="NM2603R1",
        administration=administration,
        period_id=period_id,
        lines=2,
        debit=Decimal("10.00"),
        credit=Decimal("10.00"),
        payload=f"{description}|{period_id}".encode(),
    )


def test_keys_nobody_attempted_are_decided_on_the_listing_read_ahead(tmp_path: Path) -> None:
    ledger = FakeLedger()
    poster = AdministrationPoster(ledger, PostingRecord(tmp_path))
    postings = [_posting("202601"), _posting("202602"), _posting("202603")]
    looked_up = poster.look_up(postings)
    assert sorted(ledger.listings) == ["202601", "202602", "202603"]
    rows = poster.post(postings, looked_up)
    assert [row.status for row in rows] == [Status.SENT] * 3
    assert sorted(ledger.listings) == ["202601", "202602", "202603"]  # no second listing under the lock
    assert ledger.creates == 3
    assert poster.look_up(postings) == {}  # all sent: a re-run reads nothing ahead
    assert [row.status for row in poster.post(postings)] == [Status.ALREADY_SENT] * 3
    assert ledger.creates == 3


def test_a_key_attempted_after_the_look_up_is_looked_up_again_not_created_twice(tmp_path: Path) -> None:
    """Another run writes its intent and creates between this run's look-up and its lock, then dies before
    recording the outcome: the stale listing says absent, the record says attempted, the ledger decides."""
    ledger = FakeLedger()
    posting = _posting("202603")
    poster = AdministrationPoster(ledger, PostingRecord(tmp_path))
    looked_up = poster.look_up([posting])
    assert looked_up == {"202603": {}}

    other = PostingRecord(tmp_path)  # the other run, same shared record
    with other.holding([posting.key]) as holder:
        other.put(posting.entry(PostingState.INTENT), holder)
        batch = ledger.create_journal_transaction(posting.payload)  # ... and the worker dies here

    (row,) = poster.post([posting], looked_up)
    assert ledger.creates == 1
    assert row.status is Status.ALREADY_SENT and row.batch_number == batch
    assert ledger.listings == ["202603", "202603"]  # read ahead, then again under the lock
    entry = PostingRecord(tmp_path).get(posting.key)
    assert entry is not None and entry.state is PostingState.SENT and entry.batch_number == batch


def test_a_period_not_read_ahead_is_looked_up_under_the_lock(tmp_path: Path) -> None:
    ledger = FakeLedger()
    ledger.create(f"Payroll 1001 {key_marker(_posting('202602').key)}", "202602")  # an earlier, unrecorded create
    poster = AdministrationPoster(ledger, PostingRecord(tmp_path))
    rows = poster.post([_posting("202602"), _posting("202603")], looked_up={})
    assert [row.status for row in rows] == [Status.ALREADY_SENT, Status.SENT]
    assert sorted(ledger.listings) == ["202602", "202603"]
    assert ledger.creates == 2  # the earlier one and 202603's; 202602 was found, not re-sent


def test_every_intent_is_recorded_before_the_first_create_and_every_outcome_before_the_locks_go(
    tmp_path: Path,
) -> None:
    """A worker killed at any point leaves each key either sent or marked as an intent, never silent."""
    record = PostingRecord(tmp_path)
    postings = [_posting("202601"), _posting("202602"), _posting("202603")]
    seen_at_creates: list[list[PostingState | None]] = []

    class WatchingLedger(FakeLedger):
        def create_journal_transaction(self, payload: bytes) -> str:
            seen = [PostingRecord(tmp_path).peek(p.key) for p in postings]
            seen_at_creates.append([entry.state if entry else None for entry in seen])
            return super().create_journal_transaction(payload)

    ledger = WatchingLedger()
    poster = AdministrationPoster(ledger, record)
    rows = poster.post(postings, poster.look_up(postings))
    assert [row.status for row in rows] == [Status.SENT] * 3
    assert seen_at_creates[0] == [PostingState.INTENT] * 3
    assert all(state in (PostingState.INTENT, PostingState.SENT) for states in seen_at_creates for state in states)
    after = [PostingRecord(tmp_path).peek(p.key) for p in postings]
    assert [entry.state if entry else None for entry in after] == [PostingState.SENT] * 3
    assert [entry.batch_number if entry else None for entry in after] == [row.batch_number for row in rows]


def test_creates_wait_for_a_sending_slot_with_the_keys_locked_and_the_intents_written(tmp_path: Path) -> None:
    ledger = FakeLedger()
    record = PostingRecord(tmp_path)
    sending = threading.BoundedSemaphore(1)
    poster = AdministrationPoster(ledger, record, sending=sending)
    postings = [_posting("202601"), _posting("202602"), _posting("202603")]
    looked_up = poster.look_up(postings)

    def states() -> list[PostingState | None]:
        return [entry.state if entry else None for entry in (record.peek(p.key) for p in postings)]

    sending.acquire()  # another administration is creating
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(poster.post, postings, looked_up)
        deadline = time.monotonic() + 10
        while states() != [PostingState.INTENT] * 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # room for a create that should not happen
        assert states() == [PostingState.INTENT] * 3
        assert ledger.creates == 0 and not posted.done()
        assert all(record.lock_manager.is_locked(storage_key(p.key)) for p in postings)
        sending.release()
        rows = posted.result(timeout=10)
    assert [row.status for row in rows] == [Status.SENT] * 3
    assert ledger.creates == 3 and states() == [PostingState.SENT] * 3
    assert not any(record.lock_manager.is_locked(storage_key(p.key)) for p in postings)


def test_the_sending_slots_bound_the_administrations_creating_at_once(tmp_path: Path) -> None:
    creating = 0
    most = 0
    counting = threading.Lock()

    class SlowLedger(FakeLedger):
        def create_journal_transaction(self, payload: bytes) -> str:
            nonlocal creating, most
            with counting:
                creating += 1
                most = max(most, creating)
            time.sleep(0.05)
            with counting:
                creating -= 1
                return super().create_journal_transaction(payload)

    ledger = SlowLedger()
    record = PostingRecord(tmp_path)
    sending = threading.BoundedSemaphore(2)
    batches = [[_posting(p, f"100000{n}/1/L") for p in ("202601", "202602", "202603")] for n in range(1, 5)]
    with ThreadPoolExecutor(4) as pool:
        posted = [pool.submit(AdministrationPoster(ledger, record, sending=sending).post, batch) for batch in batches]
        rows = [row for future in posted for row in future.result(timeout=30)]
    assert [row.status for row in rows] == [Status.SENT] * 12
    assert ledger.creates == 12
    assert most == 2  # each administration's creates one after another, two administrations at once
