"""The poster's decisions (tasks/posting.py) against a real SQLite posting ledger and an in-memory Visma.net.

A unit test of one component: the Visma.net here is a fake with the four calls the poster makes, each counted,
so every decision can be checked against what was created, listed and released. The pipeline over real HTTP
is proven in tests/faults; this file pins the rules: the ledger answers routine re-runs, a changed journal is
never skipped nor booked on top, equal content under another key is refused, an unanswered create is pending
until the settle time, a failed release is retried, and the creates never exceed the sending slots.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nmbrs_visma.clients.errors import ApiError, ServerError
from nmbrs_visma.clients.visma_net import JournalTransactionSummary
from nmbrs_visma.journals.keys import fingerprint, key_marker, posting_key, read_marker
from nmbrs_visma.journals.payload import (
    DtoValueOfDateTime,
    DtoValueOfDecimal,
    DtoValueOfString,
    JournalTransactionLineUpdateDto,
    JournalTransactionUpdateDto,
    payload_json,
)
from nmbrs_visma.posting_ledger import LedgerUnavailable, PostingLedger, PostingState
from nmbrs_visma.results import Status
from nmbrs_visma.tasks.posting import AdministrationPoster, Posting

ADMINISTRATION = "1000001/1/L"


class FakeVisma:
    """Creates, listings, single reads and releases of one tenant; `lag` hides new batches from listings."""

    def __init__(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}
        self.creates: list[str] = []
        self.listings: list[str] = []
        self.releases: list[str] = []
        self.lose_next = 0  # commit, then answer 502
        self.hidden: set[str] = set()  # committed but not listed yet (a lagging listing)
        self.fail_release = False
        self.closed: set[str] = set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.create_seconds = 0.0
        self._lock = threading.Lock()

    def create_journal_transaction(self, payload: bytes) -> str:
        body = json.loads(payload, parse_float=Decimal)
        period = body["financialPeriod"]["value"]
        if period in self.closed:
            raise ApiError(400, "FinancialPeriodClosed", f"Financial period {period} is closed", api="Visma.net")
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.create_seconds)
        with self._lock:
            self.in_flight -= 1
            batch = f"{len(self.batches) + 1:06d}"
            self.batches[batch] = body
            self.creates.append(batch)
            if self.lose_next:
                self.lose_next -= 1
                self.hidden.add(batch)
                raise ServerError(502, "BadGateway", "answer lost", api="Visma.net")
        return batch

    def _lines(self, batch: str) -> list[dict[str, Any]]:
        return self.batches[batch]["journalTransactionLines"]

    def _total(self, batch: str, side: str) -> Decimal:
        return sum((line.get(f"{side}AmountInCurrency", {}).get("value", Decimal(0)) for line in self._lines(batch)),
                   Decimal("0.00"))  # fmt: skip

    def list_journal_transactions(self, period_id: str, *, module: str = "GL") -> list[JournalTransactionSummary]:
        self.listings.append(period_id)
        return [
            JournalTransactionSummary(
                batch_number=batch,
                description=body["description"]["value"],
                financial_period=body["financialPeriod"]["value"],
                status="Posted" if batch in self.releases else "Balanced",
                line_count=len(body["journalTransactionLines"]),
                debit=self._total(batch, "debit"),
                credit=self._total(batch, "credit"),
            )
            for batch, body in self.batches.items()
            if body["financialPeriod"]["value"] == period_id and batch not in self.hidden
        ]

    def journal_transaction(self, batch_number: str) -> dict[str, Any]:
        body = self.batches[batch_number]
        lines = [
            {
                "accountNumber": line["accountNumber"]["value"],
                "referenceNumber": line["referenceNumber"]["value"],
                "transactionDescription": line["transactionDescription"]["value"],
                "debitAmountInCurrency": line.get("debitAmountInCurrency", {}).get("value", Decimal(0)),
                "creditAmountInCurrency": line.get("creditAmountInCurrency", {}).get("value", Decimal(0)),
                "subaccount": {"segments": [{"segmentId": 1, "segmentValue": "0000"}]},
            }
            for line in body["journalTransactionLines"]
        ]
        return {
            "batchNumber": batch_number,
            "financialPeriod": body["financialPeriod"]["value"],
            "transactionDate": body["transactionDate"]["value"],
            "description": body["description"]["value"],
            "ledger": "L",
            "branch": "1",
            "journalTransactionLines": lines,
        }

    def release_journal_transaction(self, batch_number: str) -> None:
        if self.fail_release:
            raise ApiError(400, "ReleaseFailed", "the batch could not be released", api="Visma.net")
        self.releases.append(batch_number)

    def booked(self) -> list[tuple[str, str, Decimal, Decimal]]:
        """(period, key, net debit of account 4000, net credit of 1700) per batch, to check what the ledger nets."""
        rows = []
        for batch, body in self.batches.items():
            marker = read_marker(body["description"]["value"])
            assert marker is not None
            rows.append((body["financialPeriod"]["value"], marker.key, self._total(batch, "debit"),
                         self._total(batch, "credit")))  # fmt: skip
        return rows


def make_posting(
    period: str = "202603", amount: str = "100.00", *, run_number: int = 1, release: bool = False
) -> Posting:
    key = posting_key(1001, 2026, 3, run_number, period, ADMINISTRATION)
    value = Decimal(amount)
    content = fingerprint(1001, period, [f'"4000"D{value}', f'"1700"C{value}'])
    lines = [
        JournalTransactionLineUpdateDto(
            operation="Insert",
            accountNumber=DtoValueOfString(value=account),
            referenceNumber=DtoValueOfString(value=f"NM2603R{run_number}"),
            transactionDescription=DtoValueOfString(value="Salaris"),
            **{side: DtoValueOfDecimal(value=value)},
        )
        for account, side in (("4000", "debitAmountInCurrency"), ("1700", "creditAmountInCurrency"))
    ]
    payload = JournalTransactionUpdateDto(
        transactionDate=DtoValueOfDateTime(value=dt.datetime(int(period[:4]), int(period[4:]), 25)),
        financialPeriod=DtoValueOfString(value=period),
        description=DtoValueOfString(value=f"Payroll 2026/03 run {run_number} {key_marker(key, content)}"),
        journalTransactionLines=lines,
    )
    return Posting(
        key=key,
        fingerprint=content,
        company=1001,
        company_name="Bakkerij Noord BV",
        run_id="run",
        reference=f"NM2603R{run_number}",
        administration=ADMINISTRATION,
        payroll_period=period,
        period_id=period,
        lines=2,
        debit=value,
        credit=value,
        payload=payload_json(payload),
        release=release,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> PostingLedger:
    return PostingLedger(f"sqlite:///{tmp_path / 'ledger.db'}", lock_timeout=5)


def poster(visma: FakeVisma, ledger: PostingLedger, **options: Any) -> AdministrationPoster:
    return AdministrationPoster(visma, ledger, **options)


def test_new_journals_are_created_once_and_a_rerun_costs_no_api_call(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    postings = [make_posting("202601", "-20.00"), make_posting("202603")]
    rows = poster(visma, ledger).post(postings)
    assert [row.status for row in rows] == [Status.SENT, Status.SENT]
    assert sorted(visma.listings) == ["202601", "202603"] and len(visma.creates) == 2
    states = {e.key: e.state for entries in ledger.entries(p.key for p in postings).values() for e in entries}
    assert set(states.values()) == {PostingState.SENT}

    calls = (len(visma.creates), len(visma.listings))
    again = poster(visma, ledger).post(postings)
    assert [(row.status, row.batch_number) for row in again] == [(Status.ALREADY_SENT, "000001"),
                                                                  (Status.ALREADY_SENT, "000002")]  # fmt: skip
    assert (len(visma.creates), len(visma.listings)) == calls  # the ledger answered


def test_a_journal_booked_but_not_in_this_ledger_is_adopted_not_sent_again(tmp_path: Path) -> None:
    visma = FakeVisma()
    posting = make_posting()
    poster(visma, PostingLedger(f"sqlite:///{tmp_path / 'a.db'}")).post([posting])  # another machine's ledger
    other = PostingLedger(f"sqlite:///{tmp_path / 'b.db'}")
    (row,) = poster(visma, other).post([posting])
    assert (row.status, row.batch_number, len(visma.creates)) == (Status.ALREADY_SENT, "000001", 1)
    assert "found in Visma.net" in row.reason
    (entry,) = other.entries([posting.key])[posting.key]
    assert (entry.state, entry.batch_number) == (PostingState.SENT, "000001")


def test_changed_content_is_reported_and_not_posted(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    poster(visma, ledger).post([make_posting(amount="100.00")])
    (row,) = poster(visma, ledger).post([make_posting(amount="120.00")])
    assert row.status is Status.CHANGED and row.batch_number == "000001"
    assert "debit 100.00 -> 120.00, credit 100.00 -> 120.00" in row.reason
    assert len(visma.creates) == 1


def test_repost_changed_reverses_then_posts_each_exactly_once(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    poster(visma, ledger).post([make_posting(amount="100.00")])
    rows = poster(visma, ledger, repost_changed=True).post([make_posting(amount="120.00")])
    assert [(row.status, row.batch_number) for row in rows] == [(Status.SENT, "000002"), (Status.SENT, "000003")]
    assert "reverses batch 000001" in rows[0].reason
    reversal = visma.batches["000002"]
    assert reversal["description"]["value"].startswith("Reversal of batch 000001: Payroll 2026/03 run 1")
    sides = [(line["accountNumber"]["value"], next(k for k in line if k.endswith("AmountInCurrency")))
             for line in reversal["journalTransactionLines"]]  # fmt: skip
    assert sides == [("4000", "creditAmountInCurrency"), ("1700", "debitAmountInCurrency")]
    net_debit = sum((debit for _, _, debit, _ in visma.booked()), Decimal(0))  # 100 + 100 (reversal) + 120
    assert net_debit == Decimal("320.00")
    # the ledger nets to the new journal: account 4000 debit 100 - 100 + 120
    net_4000 = Decimal(0)
    for body in visma.batches.values():
        for line in body["journalTransactionLines"]:
            if line["accountNumber"]["value"] == "4000":
                net_4000 += line.get("debitAmountInCurrency", {}).get("value", 0)
                net_4000 -= line.get("creditAmountInCurrency", {}).get("value", 0)
    assert net_4000 == Decimal("120.00")

    for options in ({"repost_changed": True}, {}):  # run again, with and without: nothing more
        again = poster(visma, ledger, **options).post([make_posting(amount="120.00")])
        assert [row.status for row in again] == [Status.ALREADY_SENT]
    assert len(visma.creates) == 3
    fresh = PostingLedger(ledger.url.replace("ledger.db", "other.db"))  # a machine without this ledger
    assert [row.status for row in poster(visma, fresh, repost_changed=True).post([make_posting(amount="120.00")])] == [
        Status.ALREADY_SENT
    ]
    assert len(visma.creates) == 3


def test_a_reversal_that_cannot_be_booked_stops_the_new_journal(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    poster(visma, ledger).post([make_posting(amount="100.00")])
    visma.closed.add("202603")
    rows = poster(visma, ledger, repost_changed=True).post([make_posting(amount="120.00")])
    assert [row.status for row in rows] == [Status.REFUSED, Status.REFUSED]
    assert "refused the reversal of batch 000001" in rows[0].reason and "closed" in rows[0].reason
    assert "not sent: the reversal of batch 000001 is not booked" in rows[1].reason
    assert visma.creates == ["000001"]


def test_the_same_content_under_another_run_is_refused_naming_the_batch(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    poster(visma, ledger).post([make_posting(run_number=1)])
    (row,) = poster(visma, ledger).post([make_posting(run_number=2)])
    assert row.status is Status.REFUSED and "already booked as batch 000001" in row.reason
    assert row.codes == ("duplicate_content",) and len(visma.creates) == 1
    (other,) = poster(visma, ledger).post([make_posting(run_number=2, amount="5.00")])  # a real second run
    assert other.status is Status.SENT and len(visma.creates) == 2


def test_a_lost_answer_with_a_lagging_listing_is_pending_until_the_settle_time(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    visma.lose_next = 1
    now = [dt.datetime.now(dt.UTC)]
    options = {"settle": 300.0, "clock": lambda: now[0]}
    (row,) = poster(visma, ledger, **options).post([make_posting()])
    assert row.status is Status.PENDING and "answer to the create was lost" in row.reason
    (again,) = poster(visma, ledger, **options).post([make_posting()])  # within the settle time, still unlisted
    assert again.status is Status.PENDING and "looked up again from" in again.reason
    assert len(visma.creates) == 1
    visma.hidden.clear()  # the listing catches up
    (found,) = poster(visma, ledger, **options).post([make_posting()])
    assert (found.status, found.batch_number, len(visma.creates)) == (Status.ALREADY_SENT, "000001", 1)


def test_an_intent_never_listed_within_the_settle_time_is_posted(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    visma.lose_next = 1
    now = [dt.datetime.now(dt.UTC)]
    poster(visma, ledger, settle=60.0, clock=lambda: now[0]).post([make_posting()])
    visma.batches.clear()  # the create never committed after all
    visma.hidden.clear()
    now[0] += dt.timedelta(seconds=61)
    (row,) = poster(visma, ledger, settle=60.0, clock=lambda: now[0]).post([make_posting()])
    assert row.status is Status.SENT and len(visma.batches) == 1


def test_a_failed_release_is_released_by_the_next_run(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    visma.fail_release = True
    (row,) = poster(visma, ledger).post([make_posting(release=True)])
    assert row.status is Status.SENT and "release failed" in row.reason and visma.releases == []
    visma.fail_release = False
    (again,) = poster(visma, ledger).post([make_posting(release=True)])
    assert again.status is Status.ALREADY_SENT and "released now" in again.reason
    assert visma.releases == ["000001"] and len(visma.creates) == 1
    (done,) = poster(visma, ledger).post([make_posting(release=True)])
    assert done.status is Status.ALREADY_SENT and visma.releases == ["000001"]


def test_an_unreachable_ledger_fails_before_any_create() -> None:
    from nmbrs_visma.sandbox.server import free_port

    broken = PostingLedger(f"postgresql://nv:secret@127.0.0.1:{free_port()}/ledger")  # nothing listens there
    visma = FakeVisma()
    (row,) = poster(visma, broken).post([make_posting()])
    assert row.status is Status.FAILED and "nothing sent" in row.reason
    assert "the posting ledger postgresql://nv:***@127.0.0.1" in row.reason and "secret" not in row.reason
    assert visma.creates == [] and visma.listings == []


def test_a_ledger_lost_after_a_create_says_what_is_known_and_the_next_run_adopts_it(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    original = visma.create_journal_transaction

    def create_then_lose_the_ledger(payload: bytes) -> str:
        batch = original(payload)
        ledger.unavailable_for_tests = True  # type: ignore[attr-defined]
        return batch

    visma.create_journal_transaction = create_then_lose_the_ledger  # type: ignore[method-assign]
    from nmbrs_visma import posting_ledger

    real_put = posting_ledger.HeldKeys.put

    def put(self: Any, *entries: Any, later: bool = False) -> None:
        if getattr(ledger, "unavailable_for_tests", False) and not later:  # held back: written with the next
            raise LedgerUnavailable("the posting ledger test.db cannot be reached (gone)")
        real_put(self, *entries, later=later)

    posting_ledger.HeldKeys.put = put  # type: ignore[method-assign]
    try:
        rows = poster(visma, ledger).post([make_posting("202601"), make_posting("202603")])
    finally:
        posting_ledger.HeldKeys.put = real_put  # type: ignore[method-assign]
    assert [row.status for row in rows] == [Status.SENT, Status.FAILED]
    assert "booked as batch 000001, but the posting ledger" in rows[0].reason and "adopts it" in rows[0].reason
    assert "not sent" in rows[1].reason and len(visma.creates) == 1
    visma.create_journal_transaction = original  # type: ignore[method-assign]
    ledger.unavailable_for_tests = False  # type: ignore[attr-defined]
    again = poster(visma, ledger).post([make_posting("202601"), make_posting("202603")])
    assert [(row.status, row.batch_number) for row in again] == [(Status.ALREADY_SENT, "000001"),
                                                                  (Status.SENT, "000002")]  # fmt: skip


def test_the_administration_lock_covers_the_look_up_and_the_creates(ledger: PostingLedger) -> None:
    visma = FakeVisma()
    events: list[str] = []

    @contextmanager
    def lock(administration: str):
        events.append(f"lock {administration} listings={len(visma.listings)}")
        yield
        events.append(f"unlock creates={len(visma.creates)}")

    poster(visma, ledger, administration_lock=lock).post([make_posting()])
    assert events == [f"lock {ADMINISTRATION} listings=0", "unlock creates=1"]
    poster(visma, ledger, administration_lock=lock).post([make_posting()])  # sent: the ledger answers, no lock
    assert len(events) == 2


def test_sending_slots_bound_the_creates_at_once(tmp_path: Path) -> None:
    visma = FakeVisma()
    visma.create_seconds = 0.05
    slots = threading.BoundedSemaphore(2)
    ledger = PostingLedger(f"sqlite:///{tmp_path / 'ledger.db'}")

    def administration(number: int) -> list[Any]:
        posting = make_posting()
        key = posting_key(1001 + number, 2026, 3, 1, "202603", f"{number}/1/L")
        return poster(visma, ledger, sending=slots).post(
            [Posting(**{**posting.__dict__, "key": key, "administration": f"{number}/1/L"})]
        )

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(administration, range(6)))
    assert all(row.status is Status.SENT for rows in results for row in rows)
    assert len(visma.creates) == 6 and visma.most_in_flight == 2
