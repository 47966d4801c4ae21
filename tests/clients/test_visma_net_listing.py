"""The journal-transaction listing, whatever its pages count: the client reads every batch with all its lines.

Pages of `GET /v2/journaltransaction` may count lines (a batch straddles pages) or whole batches, and
`metadata.totalCount` may count either; a missed batch would make the exactly-once look-up post it twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest

from nmbrs_visma.clients.visma_net import JournalTransactionSummary
from tests.support import TENANT, Sandbox, Segments, dumps, journal, subaccount

LINES = 3  # every batch of `_post` has three lines


@pytest.fixture(autouse=True)
def listing_defaults(sandbox: Sandbox) -> Iterator[None]:
    world = sandbox.world
    saved = (world.listing_pages, world.listing_lag, world.max_page_size)
    yield
    world.listing_pages, world.listing_lag, world.max_page_size = saved


def _lines(n: int) -> list[tuple[str, str, str, Segments]]:
    """Three balanced lines with amounts distinct per batch: totals show that no line was lost or doubled."""
    debit = Decimal("1000.01") * n
    part = (debit / 3).quantize(Decimal("0.01"))
    return [
        ("4000", str(debit), "0", subaccount((1, "0100"))),
        ("1700", "0", str(part), subaccount()),
        ("1600", "0", str(debit - part), subaccount()),
    ]


def _post(sandbox: Sandbox, period: str, count: int) -> dict[str, Decimal]:
    """Book `count` batches in `period`; batch number -> its debit total."""
    booked: dict[str, Decimal] = {}
    with sandbox.client() as client:
        for n in range(1, count + 1):
            body = journal(period, lines=_lines(n), description=f"{period} b{n} [nv:list{n}]")
            booked[client.create_journal_transaction(dumps(body))] = Decimal("1000.01") * n
    return booked


def _listing_pages(sandbox: Sandbox, since: int) -> list[str]:
    return [r.query for r in sandbox.world.received[since:] if r.path == "/v2/journaltransaction" and r.method == "GET"]


def _assert_complete(summaries: list[JournalTransactionSummary], booked: dict[str, Decimal], period: str) -> None:
    assert [s.batch_number for s in summaries] == list(booked)  # every batch, once, in order
    for summary in summaries:
        assert summary.line_count == LINES
        assert summary.debit == summary.credit == booked[summary.batch_number]
        assert summary.financial_period == period


def _raw_page(sandbox: Sandbox, period: str, page_number: int, page_size: int) -> list[dict[str, Any]]:
    params = {"periodId": period, "pageNumber": page_number, "pageSize": page_size}
    answer = sandbox.request("GET", "/v2/journaltransaction", params=params)
    assert answer.status_code == 200
    return answer.json()


def test_pages_counting_batches_every_batch_with_all_its_lines(sandbox: Sandbox) -> None:
    sandbox.world.listing_pages, sandbox.world.max_page_size = "batches", 2
    booked = _post(sandbox, "202605", 5)
    page = _raw_page(sandbox, "202605", 1, 2)
    assert len(page) == 2 and all(len(b["journalTransactionLines"]) == LINES for b in page)  # whole batches
    before = len(sandbox.world.received)
    with sandbox.client(page_size=50) as client:  # capped silently at 2 batches a page
        summaries = client.list_journal_transactions("202605")
    _assert_complete(summaries, booked, "202605")
    # 2 + 2 + 1 batches; the third page is short by batches but not by lines (3 >= 2), so an empty fourth ends it
    assert len(_listing_pages(sandbox, before)) == 4


def test_pages_counting_lines_a_batch_straddles_pages(sandbox: Sandbox) -> None:
    sandbox.world.max_page_size = 2
    booked = _post(sandbox, "202606", 4)
    first, second = _raw_page(sandbox, "202606", 1, 2), _raw_page(sandbox, "202606", 2, 2)
    assert [b["batchNumber"] for b in first] == [next(iter(booked))]  # two of its three lines ...
    assert second[0]["batchNumber"] == first[0]["batchNumber"]  # ... and the third on the next page
    assert first[0]["metadata"]["totalCount"] == 4 * LINES
    before = len(sandbox.world.received)
    with sandbox.client(page_size=50) as client:
        summaries = client.list_journal_transactions("202606")
    _assert_complete(summaries, booked, "202606")
    assert len(_listing_pages(sandbox, before)) == 7  # 12 lines, 2 a page, then an empty page (6 were full)


def test_a_total_count_below_the_lines_seen_does_not_end_the_paging(sandbox: Sandbox) -> None:
    """Pages count batches, so `totalCount` (batches) is reached by the lines of the first page: a client
    that stopped at `lines seen >= totalCount` would miss every batch after it."""
    sandbox.world.listing_pages, sandbox.world.max_page_size = "batches", 2
    booked = _post(sandbox, "202607", 4)
    first = _raw_page(sandbox, "202607", 1, 2)
    lines_on_first_page = sum(len(b["journalTransactionLines"]) for b in first)
    assert first[0]["metadata"]["totalCount"] == 4 <= lines_on_first_page  # the trap is real
    with sandbox.client(page_size=2) as client:
        summaries = client.list_journal_transactions("202607")
    _assert_complete(summaries, booked, "202607")


def test_a_page_full_by_batches_alone_is_followed(sandbox: Sandbox) -> None:
    """A listing that leaves lines out (headers and totals only): pages full by batch count, a `totalCount`
    that says 1. The client reads on until a short page."""
    numbers = [f"{n:06d}" for n in range(1, 6)]
    asked: list[int] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        page_number, page_size = int(request.url.params["pageNumber"]), int(request.url.params["pageSize"])
        asked.append(page_number)
        chosen = numbers[(page_number - 1) * page_size : page_number * page_size]
        body = [
            {
                "batchNumber": number,
                "status": "Balanced",
                "financialPeriod": "202608",
                "debitTotal": 10.5,
                "creditTotal": 10.5,
                "journalTransactionLines": [],
                "metadata": {"totalCount": 1, "maxPageSize": 2},
            }
            for number in chosen
        ]
        return httpx2.Response(200, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})

    with sandbox.client(page_size=2, transport=httpx2.MockTransport(handler)) as client:
        summaries = client.list_journal_transactions("202608")
    assert [s.batch_number for s in summaries] == numbers
    assert all(s.debit == s.credit == Decimal("10.50") for s in summaries)
    assert asked == [1, 2, 3]


def test_listing_lag_hides_a_new_batch_from_the_listing_only(sandbox: Sandbox) -> None:
    sandbox.world.listing_lag = 0.3
    with sandbox.client() as client:
        batch = client.create_journal_transaction(dumps(journal("202609", description="lagging [nv:lag]")))
        created = time.monotonic()
        listed = [s.batch_number for s in client.list_journal_transactions("202609")]
        assert time.monotonic() - created < 0.3, "the listing came too late to test the lag"
        assert batch not in listed
        assert client.journal_transaction(batch)["batchNumber"] == batch  # the direct read finds it at once
        time.sleep(max(0.0, 0.35 - (time.monotonic() - created)))
        assert [s.batch_number for s in client.list_journal_transactions("202609")] == [batch]
    stored = next(t for t in sandbox.world.transactions(TENANT) if t.batch_number == batch)
    assert stored.created_at > 0


def test_defaults_count_lines_and_show_a_batch_at_once(sandbox: Sandbox) -> None:
    assert sandbox.world.listing_pages == "lines" and sandbox.world.listing_lag == 0.0
    with sandbox.client() as client:
        batch = client.create_journal_transaction(dumps(journal("202610")))
        assert [s.batch_number for s in client.list_journal_transactions("202610")] == [batch]
