"""Lost answers and lost workers: a create Visma.net committed whose answer never arrived (time-out, reset,
502), a worker killed with SIGKILL between two posts, two workers running the same month at once. The ledger
ends with every transaction exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from nmbrs_visma.results import Status

from .support import (
    FlowProcess,
    api_calls,
    assert_ledger,
    assert_rows_match_ledger,
    ledger_size,
    post,
    release_administration_locks,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ALL = [1001, 1002, 1003]  # five transactions: 1001 March, 1002 March, 1003 January, February, March


@pytest.mark.parametrize("mode", ["502", "drop", "timeout"])
def test_a_committed_create_whose_answer_is_lost_is_found_not_resent(
    sandboxes, client_timeout: Callable[[float], None], mode: str
) -> None:
    world = sandboxes.visma_world
    if mode == "timeout":
        client_timeout(1.0)
        world.faults.lose_timeout = 2.0
    world.faults.lose_mode = mode  # type: ignore[assignment]
    world.faults.lose_next_creates = 2
    rows = post(companies=[1001, 1003])

    assert [row.status for row in rows] == [Status.SENT] * 4, [(r.company, r.status, r.reason) for r in rows]
    lost = [row for row in rows if "answer lost" in row.reason]
    assert len(lost) == 2, [row.reason for row in rows]
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1001, 1003]))
    assert len(api_calls(world, "POST", "/v2/journaltransaction")) == 4  # one create per transaction, no resend

    calls = len(api_calls(world))
    again = post(companies=[1001, 1003])
    assert {row.status for row in again} == {Status.ALREADY_SENT}
    assert {(r.period, r.batch_number) for r in again} == {(r.period, r.batch_number) for r in rows}
    assert len(api_calls(world)) == calls + 3  # only the re-run's reference reads: the record answered the rest
    assert_ledger(sandboxes, [1001, 1003])


def test_a_worker_killed_between_posts_then_run_again_posts_everything_once(sandboxes) -> None:
    world = sandboxes.visma_world
    world.faults.create_latency = 0.5  # slow creates, so the kill lands between two of them
    child = FlowProcess(ALL).start()
    wait_until(lambda: ledger_size(world) >= 1, 120, "the child's first commit")
    child.kill()
    time.sleep(2 * world.faults.create_latency)  # a create already at the emulator still commits: count it too
    at_kill = ledger_size(world)
    assert 1 <= at_kill < 5, at_kill
    assert_ledger(sandboxes, ALL, complete=False)
    release_administration_locks()  # the dead worker's Prefect lock: reset, not waited for (its lease: 60 s)

    world.faults.create_latency = 0.0
    rows = post(companies=ALL)
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, ALL))
    counted = Counter(row.status for row in rows)
    assert counted[Status.ALREADY_SENT] == at_kill and counted[Status.SENT] == 5 - at_kill, rows
    assert len(api_calls(world, "POST", "/v2/journaltransaction")) == 5


def test_two_workers_running_the_same_month_at_once_post_each_transaction_once(sandboxes) -> None:
    world = sandboxes.visma_world
    world.faults.create_latency = 0.2
    first, second = FlowProcess(ALL).start(), FlowProcess(ALL).start()
    rows = first.rows() + second.rows()

    assert_rows_match_ledger(rows, assert_ledger(sandboxes, ALL))
    outcome: dict[tuple[int, str], list[Status]] = {}
    for row in rows:
        outcome.setdefault((row.company, row.period), []).append(row.status)
    assert len(outcome) == 5
    for key, seen in outcome.items():
        assert sorted(seen) == sorted([Status.SENT, Status.ALREADY_SENT]), (key, seen)
    assert len(api_calls(world, "POST", "/v2/journaltransaction")) == 5
