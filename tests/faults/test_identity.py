"""A posting's identity across sources, runs, periods and ledgers: a journal file and the API for the same run,
`--period` against the file's own period, a second run of the month, a corrected re-export (changed, then
reversed and reposted), a closed-period move, a lost answer behind a lagging listing, a listing paged by
batches read with an empty posting ledger, and a failed release. Each ends with the Visma.net emulator's
ledger holding every expected transaction exactly once, to the cent, and nothing else."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from nmbrs_visma.journals.keys import read_marker, reversal_key
from nmbrs_visma.results import Status, StatusRow

from .support import (
    DEMO_PERIOD,
    PERIOD,
    Countdown,
    api_calls,
    assert_ledger,
    assert_ledger_holds,
    assert_rows_match_ledger,
    booked_ledger,
    expected_run,
    is_create,
    is_release,
    net_cents,
    on_request,
    post,
    run_lines,
    transaction_cents,
    wait_until,
    write_journal,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MARCH = "202603"
TENANT = "1000001"  # companies 1001 and 1003


def how(rows: list[StatusRow]) -> list[tuple[int, str, Status, str | None, str]]:
    return [(r.company, r.period, r.status, r.batch_number, r.reason) for r in rows]


def creates(world) -> int:
    """Every `POST /v2/journaltransaction` the emulator received (releases not counted)."""
    return len([request for request in api_calls(world) if is_create(request)])


def amount(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def edited(source: Path, target: Path, changes: dict[str, str]) -> Path:
    """`source` with each `<value>` text in `changes` replaced (each must occur exactly once)."""
    text = source.read_text(encoding="utf-8")
    for old, new in changes.items():
        assert text.count(f"<value>{old}</value>") == 1, old
        text = text.replace(f"<value>{old}</value>", f"<value>{new}</value>")
    target.write_text(text, encoding="utf-8")
    return target


def raised_wages(sandboxes, source: Path, target: Path, cents: int = 10000):
    """1001's March export with gross wages (debit 4000) and net wages payable (credit 1700) both `cents`
    higher: still balanced. Returns (file, its line cents)."""
    lines = run_lines(sandboxes, 1001, DEMO_PERIOD)
    debit, credit = (MARCH, "4000", "", "", "debit"), (MARCH, "1700", "", "", "credit")
    path = edited(
        source,
        target,
        {amount(lines[debit]): amount(lines[debit] + cents), amount(lines[credit]): amount(lines[credit] + cents)},
    )
    return path, {**lines, debit: lines[debit] + cents, credit: lines[credit] + cents}


CORRECTION_RUN = b"""<?xml version="1.0" encoding="utf-8"?>
<transactions>
  <transaction>
    <header><date>2026-03-31</date>
      <period>2026/3</period></header>
    <lines>
      <line><dim1>4000</dim1><dim2/><dim3/><value>250.00</value><debitcredit>debit</debitcredit><description>Bonus</description>
      </line>
      <line><dim1>1700</dim1><dim2/><dim3/><value>250.00</value><debitcredit>credit</debitcredit><description>Net</description>
      </line>
    </lines>
  </transaction>
</transactions>
"""
CORRECTION_LINES = {(MARCH, "4000", "", "", "debit"): 25000, (MARCH, "1700", "", "", "credit"): 25000}


# -- 1. a journal file and the API for the same run -----------------------------------------------------------

RUN_NUMBERS = [pytest.param(None, id="file-default-run-number"), pytest.param(1, id="file-run-1")]
# Nmbrs numbers a company's runs through the year (March is run 3); the identity is the run's place in its
# payroll period, which a file names with --run (default 1): both are run 1 of March 2026.


def file_run(run_number: int | None) -> dict[str, int]:
    return {} if run_number is None else {"run_number": run_number}


@pytest.mark.parametrize("run_number", RUN_NUMBERS)
def test_a_journal_file_then_the_api_for_the_same_run_is_booked_once(
    sandboxes, workspace: Path, run_number: int | None
) -> None:
    world = sandboxes.visma_world
    path = write_journal(sandboxes, workspace / "export-1001.xml", 1001)

    (sent,) = post(companies=[1001], journal_file=str(path), **file_run(run_number))
    assert sent.status is Status.SENT and sent.period == MARCH, how([sent])
    (again,) = post(companies=[1001])  # the monthly run reads the same run from the Nmbrs API
    assert again.status is Status.ALREADY_SENT, how([again])
    assert again.batch_number == sent.batch_number and again.reference == sent.reference == "NM2603R1"
    assert creates(world) == 1
    assert_rows_match_ledger([sent, again], assert_ledger(sandboxes, [1001]))  # one transaction per key


@pytest.mark.parametrize("run_number", RUN_NUMBERS)
def test_the_api_then_a_journal_file_for_the_same_run_is_booked_once(
    sandboxes, workspace: Path, run_number: int | None
) -> None:
    world = sandboxes.visma_world
    path = write_journal(sandboxes, workspace / "export-1001.xml", 1001)

    (sent,) = post(companies=[1001])
    assert sent.status is Status.SENT and sent.reference == "NM2603R1", how([sent])
    (again,) = post(companies=[1001], journal_file=str(path), **file_run(run_number))
    assert again.status is Status.ALREADY_SENT, how([again])
    assert again.batch_number == sent.batch_number
    assert creates(world) == 1
    assert_rows_match_ledger([sent, again], assert_ledger(sandboxes, [1001]))


# -- 2. --period against the file's own period ----------------------------------------------------------------


def test_a_period_that_disagrees_with_the_file_is_refused_before_any_run(sandboxes, workspace: Path, capsys) -> None:
    from nmbrs_visma.commands import run_post

    world = sandboxes.visma_world
    path = write_journal(sandboxes, workspace / "export-1001.xml", 1001)
    expected = expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=1)  # a file's run number is 1 by default

    assert run_post(period=PERIOD, companies=[1001], journal_file=path, dry_run=False) == 0
    assert_ledger_holds(world, expected)
    capsys.readouterr()

    calls = len(api_calls(world))
    assert run_post(period="2026-04", companies=[1001], journal_file=path, dry_run=False) == 2
    output = " ".join(capsys.readouterr().err.split())  # one error line, on stderr
    assert "2026-03" in output and "2026-04" in output, output
    assert "export-1001.xml" in output, output
    assert len(api_calls(world)) == calls  # refused before any run: not even a token or a look-up
    assert_ledger_holds(world, expected)

    assert run_post(period=None, companies=[1001], journal_file=path, dry_run=False) == 0
    assert "already sent" in capsys.readouterr().out
    assert creates(world) == 1
    assert_ledger_holds(world, expected)


# -- 3. a second run of the same month ------------------------------------------------------------------------


def test_a_second_run_of_the_month_needs_its_run_number_and_equal_content_is_refused(
    sandboxes, workspace: Path, capsys
) -> None:
    from nmbrs_visma.commands import run_post

    world = sandboxes.visma_world
    first = write_journal(sandboxes, workspace / "run-1.xml", 1001)
    second = workspace / "run-2.xml"
    second.write_bytes(CORRECTION_RUN)
    run_1 = expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=1)

    (sent,) = post(companies=[1001], journal_file=str(first))
    assert sent.status is Status.SENT and sent.reference == "NM2603R1", how([sent])

    (changed,) = post(companies=[1001], journal_file=str(second))  # no run number: it claims run 1's key
    assert changed.status is Status.CHANGED and changed.batch_number == sent.batch_number, how([changed])
    assert run_post(period=None, companies=[1001], journal_file=second, dry_run=False) == 1  # exit non-zero
    assert "changed" in capsys.readouterr().out
    assert creates(world) == 1
    assert_ledger_holds(world, run_1)

    (twin,) = post(companies=[1001], journal_file=str(first), run_number=2)  # run 1's content as run 2
    assert twin.status is Status.REFUSED and twin.codes == ("duplicate_content",), how([twin])
    assert f"batch {sent.batch_number}" in twin.reason, twin.reason
    assert creates(world) == 1

    (own,) = post(companies=[1001], journal_file=str(second), run_number=2)
    assert own.status is Status.SENT and own.reference == "NM2603R2", how([own])
    assert own.batch_number != sent.batch_number
    run_2 = expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=2, lines=CORRECTION_LINES)
    ledger = assert_ledger_holds(world, {**run_1, **run_2})
    assert_rows_match_ledger([sent, own], ledger)
    ((_, booked),) = [ledger[key] for key in run_2]
    assert {line.reference for line in booked.lines} == {"NM2603R2"}

    (still,) = post(companies=[1001], journal_file=str(first), run_number=2)  # run 2's key holds other content
    assert still.status is Status.CHANGED and still.batch_number == own.batch_number, how([still])
    assert creates(world) == 2
    assert_ledger_holds(world, {**run_1, **run_2})


# -- 4. a corrected re-export of a sent run -------------------------------------------------------------------


def test_a_corrected_export_is_changed_then_reversed_and_reposted_once(sandboxes, workspace: Path, monkeypatch) -> None:
    world = sandboxes.visma_world
    original = write_journal(sandboxes, workspace / "export.xml", 1001)
    corrected, corrected_lines = raised_wages(sandboxes, original, workspace / "export-corrected.xml")
    (key,) = expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=1)
    old = expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=1)[key]
    new = expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=1, lines=corrected_lines)[key]

    (sent,) = post(companies=[1001], journal_file=str(original))
    assert sent.status is Status.SENT, how([sent])
    ((_, first),) = booked_ledger(world)[key]
    old_debit = first.debit_total

    (changed,) = post(companies=[1001], journal_file=str(corrected))
    assert changed.status is Status.CHANGED and changed.batch_number == sent.batch_number, how([changed])
    new_debit = old_debit + 100
    assert f"debit {old_debit:.2f} -> {new_debit:.2f}" in changed.reason, changed.reason
    assert f"credit {old_debit:.2f} -> {new_debit:.2f}" in changed.reason, changed.reason
    assert creates(world) == 1

    rows = post(companies=[1001], journal_file=str(corrected), repost_changed=True)
    assert [r.status for r in rows] == [Status.SENT, Status.SENT], how(rows)
    reversal_row = next(r for r in rows if "reverses batch" in r.reason)
    assert f"reverses batch {sent.batch_number}" in reversal_row.reason, reversal_row.reason
    assert (reversal_row.debit, reversal_row.credit) == (old_debit, old_debit)
    repost_row = next(r for r in rows if r is not reversal_row)
    assert (repost_row.debit, repost_row.credit) == (new_debit, new_debit)
    assert creates(world) == 3

    booked = booked_ledger(world)
    assert None not in booked
    old_fingerprint = read_marker(first.description).fingerprint  # type: ignore[union-attr]
    undo = reversal_key(key, old_fingerprint)
    assert set(booked) == {key, undo}, sorted(booked)  # type: ignore[type-var]
    assert booked[key][0][1].batch_number == sent.batch_number  # creation order: the original first
    ((_, reversal),) = booked[undo]
    ((_, replacement),) = [found for found in booked[key] if found[1].batch_number != sent.batch_number]
    assert reversal.batch_number == reversal_row.batch_number and replacement.batch_number == repost_row.batch_number
    assert reversal.period_id == first.period_id == MARCH
    assert f"batch {sent.batch_number}" in reversal.description, reversal.description
    assert transaction_cents(first) == old.cents
    swapped = {(a, d, p, "credit" if side == "debit" else "debit"): c for (a, d, p, side), c in old.cents.items()}
    assert transaction_cents(reversal) == swapped  # the same lines, sides swapped
    assert transaction_cents(replacement) == new.cents
    assert net_cents([first, reversal, replacement]) == new.cents  # the ledger now says exactly the new journal

    for repost in (False, True):  # a third run posts nothing, whether or not it may repost
        again = post(companies=[1001], journal_file=str(corrected), repost_changed=repost)
        assert [r.status for r in again] == [Status.ALREADY_SENT], how(again)
        assert again[0].batch_number == replacement.batch_number
    assert creates(world) == 3
    monkeypatch.setenv("NMBRS_VISMA_LEDGER_URL", f"sqlite:///{workspace / 'empty-ledger.db'}")
    for repost in (False, True):  # nor does one without the ledger: the listing shows the original undone
        again = post(companies=[1001], journal_file=str(corrected), repost_changed=repost)
        assert [r.status for r in again] == [Status.ALREADY_SENT], how(again)
        assert again[0].batch_number == replacement.batch_number
    assert creates(world) == 3
    assert sum(len(found) for found in booked_ledger(world).values()) == 3


# -- 5. a closed-period move keeps the keys ---------------------------------------------------------------------


def test_corrections_moved_out_of_closed_periods_are_not_booked_twice(sandboxes, workspace, monkeypatch) -> None:
    from nmbrs_visma.blocks.mapping import AdministrationMappingBlock, mapping_block_name
    from nmbrs_visma.flows.backfill import backfill_correction_periods
    from nmbrs_visma.flows.post_payroll_journals import pass_rows
    from nmbrs_visma.journals.models import ClosedPeriodPolicy

    world = sandboxes.visma_world
    block = AdministrationMappingBlock.load(mapping_block_name(1003), _sync=True)
    block.closed_period_policy = ClosedPeriodPolicy.NEXT_OPEN
    block.save(mapping_block_name(1003), overwrite=True, _sync=True)  # the next test's fixture re-applies the demo

    first = post(companies=[1003])  # the March run and its corrections of January and February
    assert sorted((r.period, r.status) for r in first) == [
        ("202601", Status.SENT),
        ("202602", Status.SENT),
        (MARCH, Status.SENT),
    ], how(first)
    assert_rows_match_ledger(first, assert_ledger(sandboxes, [1003]))

    tenant = world.tenants[TENANT]
    for period_id in ("202601", "202602"):  # the bookkeeper closes January and February
        tenant.close_period(period_id)

    again = post(companies=[1003])  # would now book January and February in March: the keys say it is done
    assert {r.status for r in again} == {Status.ALREADY_SENT}, how(again)
    assert sorted(r.period for r in again) == ["202601", "202602", MARCH]
    monkeypatch.setenv("NMBRS_VISMA_LEDGER_URL", f"sqlite:///{workspace / 'empty-ledger.db'}")
    found = post(companies=[1003])  # no local record: found by key in the payroll periods' own listings
    assert {r.status for r in found} == {Status.ALREADY_SENT}, how(found)
    assert {(r.period, r.batch_number) for r in found} == {(r.period, r.batch_number) for r in first}
    assert creates(world) == 3
    assert_ledger(sandboxes, [1003])

    rows = pass_rows(backfill_correction_periods(start="2026-01", end="2026-03", companies=[1003], return_state=True))
    counted = Counter((r.status, r.period) for r in rows)
    assert counted == Counter(
        {
            (Status.SENT, MARCH): 2,  # the January and February runs, booked in March, the first open period
            (Status.ALREADY_SENT, "202601"): 1,
            (Status.ALREADY_SENT, "202602"): 1,
            (Status.ALREADY_SENT, MARCH): 1,
        }
    ), how(rows)
    moved = [r for r in rows if r.status is Status.SENT]
    assert all("first open period" in r.reason for r in moved), how(moved)
    expected = {
        **expected_run(sandboxes, 1003, DEMO_PERIOD),
        **expected_run(sandboxes, 1003, 1, booked_in={"202601": MARCH}),
        **expected_run(sandboxes, 1003, 2, booked_in={"202602": MARCH}),
    }
    assert len(expected) == 5
    assert_rows_match_ledger([*first, *rows], assert_ledger_holds(world, expected))

    monkeypatch.setenv("NMBRS_VISMA_LEDGER_URL", f"sqlite:///{workspace / 'another-empty-ledger.db'}")
    rerun = pass_rows(backfill_correction_periods(start="2026-01", end="2026-03", companies=[1003], return_state=True))
    assert {r.status for r in rerun} == {Status.ALREADY_SENT}, how(rerun)
    assert creates(world) == 5
    assert_ledger_holds(world, expected)


# -- 6. a lost answer behind a lagging listing; an intent that never committed ------------------------------------


def test_a_lost_answer_behind_a_lagging_listing_stays_pending_then_is_found_once(sandboxes) -> None:
    world = sandboxes.visma_world
    world.listing_lag = 30.0  # long enough for two runs; shortened below, as if the time had passed
    world.faults.lose_mode = "502"
    world.faults.lose_next_creates = 1

    (lost,) = post(companies=[1001])
    assert lost.status is Status.PENDING and "answer to the create was lost" in lost.reason, how([lost])
    (transaction,) = world.transactions(TENANT)  # committed, though its answer was lost
    assert creates(world) == 1

    (waiting,) = post(companies=[1001])  # still inside the lag: not listed, the intent is young
    assert waiting.status is Status.PENDING and "no known outcome" in waiting.reason, how([waiting])
    assert not world.listed(transaction), "the re-run must fall inside the listing lag"
    assert creates(world) == 1

    world.listing_lag = 2.0
    wait_until(lambda: world.listed(transaction), 10, "the listing lag to pass", interval=0.1)
    (found,) = post(companies=[1001])
    assert found.status is Status.ALREADY_SENT and found.batch_number == transaction.batch_number, how([found])
    assert "found in Visma.net" in found.reason, found.reason
    assert creates(world) == 1
    assert_rows_match_ledger([found], assert_ledger(sandboxes, [1001]))


def test_an_intent_whose_create_never_committed_is_posted_after_the_settle_time_once(sandboxes, monkeypatch) -> None:
    from nmbrs_visma.posting_ledger import PostingLedger, PostingState

    monkeypatch.setenv("NMBRS_VISMA_SETTLE_SECONDS", "1")
    world = sandboxes.visma_world

    def fail_it() -> None:  # answered 500 before the emulator books anything: the create never committed
        world.faults.fail_next = 1

    on_request(world, Countdown(is_create, 1, fail_it))
    (unknown,) = post(companies=[1001])
    assert unknown.status is Status.PENDING, how([unknown])
    assert world.transactions(TENANT) == [] and creates(world) == 1
    (entry,) = PostingLedger().all_entries()
    assert entry.state is PostingState.INTENT

    time.sleep(1.2)  # the settle time passes; the listing still does not show it
    (sent,) = post(companies=[1001])
    assert sent.status is Status.SENT, how([sent])
    assert creates(world) == 2
    assert_rows_match_ledger([sent], assert_ledger(sandboxes, [1001]))
    states = Counter(e.state for e in PostingLedger().all_entries())
    assert states == Counter({PostingState.SENT: 1}), states  # the intent's row now records the outcome

    (again,) = post(companies=[1001])
    assert again.status is Status.ALREADY_SENT and again.batch_number == sent.batch_number, how([again])
    assert creates(world) == 2
    assert_ledger(sandboxes, [1001])


# -- 7. a listing paged by batches, read with an empty posting ledger ------------------------------------------------


def test_a_listing_paged_by_batches_finds_every_key_with_an_empty_ledger(sandboxes, workspace, monkeypatch) -> None:
    world = sandboxes.visma_world
    world.listing_pages = "batches"
    world.max_page_size = 1  # one batch a page
    second = workspace / "run-2.xml"
    second.write_bytes(CORRECTION_RUN)

    rows = post(companies=[1001, 1003])
    rows += post(companies=[1001], journal_file=str(second), run_number=2)
    assert {r.status for r in rows} == {Status.SENT}, how(rows)
    expected = {
        **expected_run(sandboxes, 1001, DEMO_PERIOD),
        **expected_run(sandboxes, 1003, DEMO_PERIOD),
        **expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=2, lines=CORRECTION_LINES),
    }
    ledger = assert_ledger_holds(world, expected)
    assert sum(1 for _, t in ledger.values() if t.period_id == MARCH) == 3  # several in one period: three pages
    assert_rows_match_ledger(rows, ledger)

    monkeypatch.setenv("NMBRS_VISMA_LEDGER_URL", f"sqlite:///{workspace / 'fresh-ledger.db'}")
    pages_before = len(api_calls(world, "GET", "/v2/journaltransaction"))
    again = post(companies=[1001, 1003])
    again += post(companies=[1001], journal_file=str(second), run_number=2)
    assert {r.status for r in again} == {Status.ALREADY_SENT}, how(again)
    assert all("found in Visma.net by its key" in r.reason for r in again), how(again)
    assert {(r.company, r.period, r.batch_number) for r in again} == {
        (r.company, r.period, r.batch_number) for r in rows
    }
    assert creates(world) == 5  # the first runs' five creates, nothing after
    march_pages = [
        r
        for r in api_calls(world, "GET", "/v2/journaltransaction")[pages_before:]
        if r.path == "/v2/journaltransaction" and "periodId=202603" in r.query and r.tenant_id == TENANT
    ]
    assert len(march_pages) >= 4  # three one-batch pages and the empty page that ends the listing
    assert_rows_match_ledger(again, assert_ledger_holds(world, expected))


# -- 8. a failed release --------------------------------------------------------------------------------------------


def test_a_failed_release_is_released_by_the_next_run_and_created_once(sandboxes) -> None:
    from nmbrs_visma.blocks.mapping import AdministrationMappingBlock, mapping_block_name

    world = sandboxes.visma_world
    block = AdministrationMappingBlock.load(mapping_block_name(1001), _sync=True)
    block.release = True
    block.save(mapping_block_name(1001), overwrite=True, _sync=True)  # the next test's fixture re-applies the demo

    def fail_it() -> None:  # this release request is answered 500
        world.faults.fail_next = 1

    on_request(world, Countdown(is_release, 1, fail_it))
    (created,) = post(companies=[1001])
    assert created.status is Status.SENT and created.batch_number, how([created])
    assert "created, but the release failed" in created.reason, created.reason
    (transaction,) = world.transactions(TENANT)
    assert transaction.status == "Balanced"

    (released,) = post(companies=[1001])
    assert released.status is Status.ALREADY_SENT and released.batch_number == created.batch_number, how([released])
    assert "released now" in released.reason, released.reason
    assert transaction.status == "Posted"
    assert len(api_calls(world, "POST", f"/v2/journaltransaction/{created.batch_number}/action/release")) == 2

    (done,) = post(companies=[1001])
    assert done.status is Status.ALREADY_SENT and "released now" not in done.reason, how([done])
    assert len([r for r in api_calls(world) if is_release(r)]) == 2
    assert creates(world) == 1
    assert_rows_match_ledger([created, released, done], assert_ledger(sandboxes, [1001]))


# -- 4 x 6. a reversal whose answer is lost behind a lagging listing ----------------------------------------------


def test_a_reversal_whose_answer_is_lost_is_not_sent_twice(sandboxes, workspace: Path) -> None:
    world = sandboxes.visma_world
    original = write_journal(sandboxes, workspace / "export.xml", 1001)
    corrected, corrected_lines = raised_wages(sandboxes, original, workspace / "export-corrected.xml")
    (key,) = new = expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=1, lines=corrected_lines)

    (sent,) = post(companies=[1001], journal_file=str(original))
    assert sent.status is Status.SENT, how([sent])
    world.listing_lag = 60.0  # new batches stay out of the listing (the original is known from the ledger)
    world.faults.lose_mode = "502"
    world.faults.lose_next_creates = 1  # the reversal commits, its answer is lost

    rows = post(companies=[1001], journal_file=str(corrected), repost_changed=True)
    assert sorted(r.status for r in rows) == [Status.PENDING, Status.PENDING], how(rows)
    assert creates(world) == 2  # the original and the reversal; the new journal waits for the reversal

    again = post(companies=[1001], journal_file=str(corrected), repost_changed=True)  # inside the lag
    assert creates(world) == 2, how(again)  # the reversal is not sent again, nor the new journal without it
    assert {r.status for r in again} == {Status.PENDING}, how(again)

    world.listing_lag = 0.0  # the lag has passed: the lost reversal shows
    done = post(companies=[1001], journal_file=str(corrected), repost_changed=True)
    assert creates(world) == 3, how(done)
    assert [r.status for r in done] == [Status.SENT], how(done)  # the reversal found; the new journal posted
    transactions = [t for _, found in booked_ledger(world).items() for _, t in found]
    assert len(transactions) == 3
    assert net_cents(transactions) == new[key].cents


def test_a_reversal_that_never_committed_is_sent_after_the_settle_time_once(sandboxes, workspace, monkeypatch) -> None:
    monkeypatch.setenv("NMBRS_VISMA_SETTLE_SECONDS", "1")
    world = sandboxes.visma_world
    original = write_journal(sandboxes, workspace / "export.xml", 1001)
    corrected, corrected_lines = raised_wages(sandboxes, original, workspace / "export-corrected.xml")
    (key,) = new = expected_run(sandboxes, 1001, DEMO_PERIOD, run_number=1, lines=corrected_lines)

    (sent,) = post(companies=[1001], journal_file=str(original))
    assert sent.status is Status.SENT, how([sent])

    def fail_it() -> None:  # the reversal's create is answered 500 before anything is booked
        world.faults.fail_next = 1

    on_request(world, Countdown(is_create, 1, fail_it))  # the next create: the reversal
    rows = post(companies=[1001], journal_file=str(corrected), repost_changed=True)
    assert sorted(r.status for r in rows) == [Status.PENDING, Status.PENDING], how(rows)
    assert len(world.transactions(TENANT)) == 1

    time.sleep(1.2)  # the settle time passes and the listing still shows no reversal: it never happened
    done = post(companies=[1001], journal_file=str(corrected), repost_changed=True)
    assert [r.status for r in done] == [Status.SENT, Status.SENT], how(done)
    assert creates(world) == 4  # the original, the reversal that failed, the reversal, the new journal
    transactions = [t for _, found in booked_ledger(world).items() for _, t in found]
    assert len(transactions) == 3
    assert net_cents(transactions) == new[key].cents

    again = post(companies=[1001], journal_file=str(corrected), repost_changed=True)
    assert [r.status for r in again] == [Status.ALREADY_SENT], how(again)
    assert creates(world) == 4
