"""Transient faults of Visma.net: 429 storms with `Retry-After`, 5xx bursts, latency spikes past the client's
time-out. The pipeline waits, retries what is safe to retry, never re-sends a create blindly, and the ledger
ends with every transaction exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from nmbrs_visma.results import Status

from .support import (
    Countdown,
    api_calls,
    assert_ledger,
    assert_rows_match_ledger,
    is_create,
    ledger_size,
    on_request,
    post,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SENT = {Status.SENT}
ALL = [1001, 1002, 1003]


def test_a_429_storm_is_waited_out_with_retry_after_and_nothing_is_lost_or_doubled(sandboxes) -> None:
    """Another application drains the tenants' shared rate budget for two seconds: every call of ours in that
    storm gets 429 + Retry-After, waits, and goes through afterwards."""
    world = sandboxes.visma_world
    world.rate_limit_per_window, world.rate_window_seconds = 5, 1.0
    refused: list[str] = []
    take_budget = world.take_budget

    def counted(tenant_id: str) -> tuple[bool, int, float]:
        allowed, remaining, reset = take_budget(tenant_id)
        if not allowed:
            refused.append(tenant_id)
        return allowed, remaining, reset

    world.take_budget = counted  # the API's calls are counted; the neighbour below is not
    storm = threading.Event()

    def neighbour() -> None:  # drains both tenants' budget as soon as a window opens
        while not storm.wait(0.02):
            for tenant_id in ("1000001", "1000002"):
                take_budget(tenant_id)

    def start_storm() -> None:  # from the pipeline's first API call on, for two seconds
        threading.Thread(target=neighbour, daemon=True).start()
        threading.Timer(2.0, storm.set).start()

    on_request(world, Countdown(lambda request: True, 1, start_storm))
    rows = post(companies=ALL)
    storm.set()

    assert refused, "the storm never reached the pipeline"
    assert {row.status for row in rows} == SENT, [(r.company, r.status, r.reason) for r in rows]
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, ALL))
    creates = api_calls(world, "POST", "/v2/journaltransaction")
    assert len(creates) >= len(rows)  # a create refused with 429 was not acted on, so it was sent again


def test_a_5xx_burst_fails_only_what_cannot_be_known_and_the_rerun_completes_it_once(
    sandboxes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NMBRS_VISMA_SETTLE_SECONDS", "1")  # how long an unanswered create may take to be listed
    world = sandboxes.visma_world
    world.faults.fail_next = 4  # a burst on the first calls (reference reads: retried)
    world.faults.server_error_share = 0.35  # then every third call or so, creates included
    first = post(companies=ALL)

    assert {row.status for row in first} <= {Status.SENT, Status.PENDING, Status.FAILED}
    for row in first:
        if row.status in (Status.PENDING, Status.FAILED):  # a 5xx create: its outcome unknown, not sent again
            assert "HTTP 500" in row.reason or "HTTP 503" in row.reason, row.reason
    booked = assert_ledger(sandboxes, ALL, complete=False)  # a 5xx create was not committed by the emulator
    assert_rows_match_ledger(first, booked)

    world.faults.server_error_share = 0.0
    time.sleep(1.2)  # past the settle time: an intent still not listed is posted
    second = post(companies=ALL)
    assert_rows_match_ledger(second, assert_ledger(sandboxes, ALL))
    assert {row.status for row in second} <= {Status.SENT, Status.ALREADY_SENT}
    sent_first = {(row.company, row.period): row.batch_number for row in first if row.status is Status.SENT}
    again = {(row.company, row.period): row.batch_number for row in second if row.status is Status.ALREADY_SENT}
    assert sent_first.items() <= again.items()  # what the first run sent, the second did not send again


def test_a_create_slower_than_the_client_timeout_is_looked_up_never_resent(
    sandboxes, client_timeout: Callable[[float], None]
) -> None:
    """The create times out on our side but Visma.net commits it later: the run reports it pending (outcome
    unknown, not sent again); the next run finds it by its key instead of posting a second one."""
    client_timeout(1.0)
    world = sandboxes.visma_world
    world.faults.create_latency = 1.8
    (row,) = post(companies=[1001])
    assert row.status is Status.PENDING
    assert "not sent again" in row.reason and "ReadTimeout" in row.reason, row.reason
    wait_until(lambda: ledger_size(world) == 1, 10, "the late commit")  # the spike's create lands after all

    world.faults.create_latency = 0.0
    (again,) = post(companies=[1001])
    assert again.status is Status.ALREADY_SENT and "found in Visma.net" in again.reason, again
    assert_rows_match_ledger([again], assert_ledger(sandboxes, [1001]))
    assert len(api_calls(world, "POST", "/v2/journaltransaction")) == 1


def test_a_read_latency_spike_is_retried_through(sandboxes, client_timeout: Callable[[float], None]) -> None:
    """Reads slower than the time-out for a few seconds: reads are safe, so they are retried until the spike
    passes; then everything is posted once."""
    client_timeout(1.0)
    world = sandboxes.visma_world
    world.faults.read_latency = 1.5

    def spike_over() -> None:
        world.faults.read_latency = 0.0

    on_request(world, Countdown(lambda r: r.method == "GET", 2, lambda: threading.Timer(1.5, spike_over).start()))
    rows = post(companies=[1001, 1002])
    assert {row.status for row in rows} == SENT, [(r.company, r.status, r.reason) for r in rows]
    assert_rows_match_ledger(rows, assert_ledger(sandboxes, [1001, 1002]))
    reads = api_calls(world, "GET", "/v1/financialPeriod")
    assert len(reads) > 2  # two tenants, and at least one read timed out and was sent again
    assert len([r for r in api_calls(world) if is_create(r)]) == len(rows)  # one create per transaction
