"""The default, run-driven pass against both emulators over real HTTP: every locked run not booked yet.

The daily deployment's day: a first pass posts every locked run of the demo (January, February and March,
corrections included); a second pass with nothing new makes no call on Visma.net's journals or reference data
and reads no journal from Nmbrs; a run locked after the first pass is posted by the next pass, and nothing
else is.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.sandbox.demo_data import DEMO_PERIOD, DEMO_YEAR

pytestmark = pytest.mark.slow

POSTED = {1001, 1002, 1003, 1005, 1006}  # 1004 test company, 2001 blocked debtor; 1005 March run unlocked


def _pass(**kwargs: object) -> list[StatusRow]:
    from nmbrs_visma.flows.post_payroll_journals import pass_rows, post_payroll_journals

    return pass_rows(post_payroll_journals(**kwargs, return_state=True))  # type: ignore[arg-type]


def _visma_reads(sandboxes: object) -> list[tuple[str, str]]:
    """Visma.net calls other than tokens: journals, periods, accounts, dimensions."""
    return [call for call in sandboxes.visma_calls if call[1].startswith("/v")]  # type: ignore[attr-defined]


def _nmbrs_calls(sandboxes: object, since: int) -> Counter[str]:
    calls = sandboxes.nmbrs_world.calls("/api")[since:]  # type: ignore[attr-defined]
    kinds: Counter[str] = Counter()
    for call in calls:
        tail = call.path.rsplit("/", 1)[-1]
        kinds["journal" if tail.startswith("journals") or "/documents/" in call.path else tail] += 1
    return kinds


def test_each_locked_run_is_posted_once_and_a_run_locked_later_by_the_next_pass(sandboxes: object, ledger) -> None:
    nmbrs = sandboxes.nmbrs_world  # type: ignore[attr-defined]
    late = next(
        run
        for run in nmbrs.runs[nmbrs.company_by_number(1005).company_id]
        if (run.year, run.period_end) == (DEMO_YEAR, DEMO_PERIOD)
    )
    assert not late.locked
    first = _pass()
    by_status = Counter(row.status for row in first)
    sent = [row for row in first if row.status is Status.SENT]
    assert {row.company for row in sent} == POSTED
    # January and February runs of every posted company, March of 1001-1003 (1003's corrects two months)
    assert {(row.company, row.reference) for row in sent if row.company == 1005} == {
        (1005, "NM2601R1"),
        (1005, "NM2602R1"),
    }
    assert [row.reference for row in first if row.status is Status.WAITING] == ["NM2603R1"]
    assert {row.company for row in first if row.status is Status.REFUSED} == {2001}
    assert {row.company for row in first if row.status is Status.SKIPPED} == {1004}
    assert len(ledger(sandboxes)) == by_status[Status.SENT]

    # a day with nothing new: no Visma.net read or create, no journal read from Nmbrs
    sandboxes.visma_calls.clear()  # type: ignore[attr-defined]
    since = len(nmbrs.calls("/api"))
    second = _pass()
    assert _visma_reads(sandboxes) == []
    calls = _nmbrs_calls(sandboxes, since)
    assert calls["journal"] == 0
    # one runs listing per company with a run booked this year; the two never booked (refused) list last year
    # too, and read their period type, which the ledger learns from a booked run
    assert calls["runs"] == 5 + 2 * 2 and calls["period"] == 2
    assert not [row for row in second if row.status is Status.SENT]
    assert [row.reference for row in second if row.status is Status.WAITING] == ["NM2603R1"]
    assert {row.company for row in second if row.status is Status.NO_RUN} == {1001, 1002, 1003, 1006}
    count = len(ledger(sandboxes))

    # the March run of 1005 is locked: the next pass posts it, and only it
    runs = nmbrs.runs[late.company_id]
    runs[runs.index(late)] = dataclasses.replace(late, locked=True)
    try:
        third = _pass()
    finally:
        runs[runs.index(dataclasses.replace(late, locked=True))] = late
    new = [row for row in third if row.status is Status.SENT]
    assert {(row.company, row.reference) for row in new} == {(1005, "NM2603R1")}
    assert len(ledger(sandboxes)) == count + len(new)
    assert not [row for row in third if row.status is Status.WAITING]


def test_a_period_or_a_run_narrows_the_pass(sandboxes: object, ledger) -> None:
    february = _pass(period=f"{DEMO_YEAR}-02", companies=[1001, 1002])
    assert {(row.company, row.reference, row.status) for row in february} == {
        (1001, "NM2602R1", Status.SENT),
        (1002, "NM2602R1", Status.SENT),
    }
    one = _pass(run="NM2601R1", companies=[1001])
    assert {(row.reference, row.status) for row in one} == {("NM2601R1", Status.SENT)}
    # the same period again: what was sent is reported so, and nothing is posted
    again = _pass(period=f"{DEMO_YEAR}-02", companies=[1001, 1002])
    assert {row.status for row in again} == {Status.ALREADY_SENT}
    assert len(ledger(sandboxes)) == 3
