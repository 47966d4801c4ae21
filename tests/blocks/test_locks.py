"""The Prefect server's locks (`server_lock`): one slot per name, granted through one lease broker per process,
against a real Prefect API. What another worker holds is held here by a lease taken with the client directly."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def names(prefect_api: str) -> Iterator[list[str]]:
    """Fresh limit names (none exists yet); the limits are deleted afterwards."""
    from prefect.client.orchestration import get_client

    made = [f"nmbrs-visma-test-lock-{uuid.uuid4().hex[:10]}-{n}" for n in range(12)]
    yield made
    with get_client(sync_client=True) as client:
        for limit in client.read_global_concurrency_limits(limit=200):
            if limit.name in made:
                client.delete_global_concurrency_limit_by_name(limit.name)


def active_slots(name: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(name)
    assert (limit.limit, limit.active) == (1, True), limit
    return limit.active_slots


@contextmanager
def held_elsewhere(name: str) -> Iterator[None]:
    """Another worker's hold of `name`: a lease of its own, outside this process's broker."""
    from prefect.client.orchestration import get_client

    from nmbrs_visma.blocks.locks import ensure_lock

    ensure_lock(name)
    with get_client(sync_client=True) as client:
        response = client.increment_concurrency_slots_with_lease(
            names=[name], slots=1, mode="concurrency", lease_duration=60
        )
        lease_id = uuid.UUID(response.json()["lease_id"])
        try:
            yield
        finally:
            client.release_concurrency_slots_with_lease(lease_id)


class LeaseCalls:
    """Records the names of every lease acquisition the broker sends, while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from nmbrs_visma.blocks import locks

        self.names: list[list[str]] = []
        original = locks._LeaseCalls.increment

        def counted(calls: locks._LeaseCalls, names: list[str]) -> dict[str, object]:
            self.names.append(list(names))
            return original(calls, names)

        monkeypatch.setattr(locks._LeaseCalls, "increment", counted)


def test_a_missing_limit_is_created_held_and_freed(names: list[str]) -> None:
    from nmbrs_visma.blocks.locks import server_lock

    with server_lock(names[0], timeout_seconds=10):
        assert active_slots(names[0]) == 1
    assert active_slots(names[0]) == 0


def test_many_holders_at_once_share_few_lease_calls_and_all_are_freed(
    names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmbrs_visma.blocks.locks import ensure_lock, server_lock

    for name in names:
        ensure_lock(name)
    calls = LeaseCalls(monkeypatch)
    inside = threading.Barrier(len(names), timeout=30)
    seen: dict[str, int] = {}

    def hold(name: str) -> None:
        with server_lock(name, timeout_seconds=30):
            seen[name] = active_slots(name)
            inside.wait()  # every holder is inside at once: no lock waited for another's release

    threads = [threading.Thread(target=hold, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert seen == dict.fromkeys(names, 1)
    assert sorted(n for call in calls.names for n in call) == sorted(names)  # each name asked for once
    assert len(calls.names) < len(names)  # requests that arrived together went in one call
    assert [active_slots(name) for name in names] == [0] * len(names)


def test_two_holders_of_one_name_in_one_process_take_turns(names: list[str]) -> None:
    from nmbrs_visma.blocks.locks import server_lock

    inside: list[int] = []
    overlaps: list[int] = []
    guard = threading.Lock()

    def hold() -> None:
        with server_lock(names[0], timeout_seconds=30):
            with guard:
                inside.append(1)
                overlaps.append(len(inside))
            time.sleep(0.3)
            with guard:
                inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert overlaps == [1, 1, 1]
    assert active_slots(names[0]) == 0


def test_a_name_held_elsewhere_waits_for_its_release(names: list[str]) -> None:
    from nmbrs_visma.blocks.locks import server_lock

    got: list[float] = []
    with held_elsewhere(names[0]):
        waiter = threading.Thread(target=lambda: got.append(_hold_once(server_lock, names[0], 30)))
        waiter.start()
        time.sleep(1.5)
        assert got == []  # still waiting: the other worker holds it
        released = time.monotonic()
    waiter.join(30)
    assert len(got) == 1 and got[0] >= released
    assert active_slots(names[0]) == 0


def test_a_name_held_elsewhere_times_out_without_running_the_block(names: list[str]) -> None:
    from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError

    from nmbrs_visma.blocks.locks import server_lock

    ran = []
    with (
        held_elsewhere(names[0]),
        pytest.raises(AcquireConcurrencySlotTimeoutError),
        server_lock(names[0], timeout_seconds=1.5),
    ):
        ran.append(True)
    assert ran == []
    assert active_slots(names[0]) == 0


def test_one_busy_name_does_not_hold_up_the_others_asked_with_it(names: list[str]) -> None:
    from nmbrs_visma.blocks.locks import ensure_lock, server_lock

    busy, *free = names[:6]
    for name in free:
        ensure_lock(name)
    granted: dict[str, float] = {}
    with held_elsewhere(busy):
        started = time.monotonic()
        threads = [
            threading.Thread(target=lambda n=name: granted.__setitem__(n, _hold_once(server_lock, n, 30)))
            for name in [busy, *free]
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        assert sorted(granted) == sorted(free)  # granted while the busy one is still held elsewhere
        assert max(granted.values()) - started < 2.0
    for thread in threads:
        thread.join(30)
    assert busy in granted
    time.sleep(2.5)  # a request asked for twice (in its group, then alone) would be granted again by now
    assert [active_slots(name) for name in names[:6]] == [0] * 6


def test_a_long_hold_renews_its_lease(names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from nmbrs_visma.blocks import locks

    renewals: list[uuid.UUID] = []
    original = locks._LeaseCalls.renew

    def counted(calls: locks._LeaseCalls, lease_id: uuid.UUID) -> None:
        renewals.append(lease_id)
        original(calls, lease_id)

    monkeypatch.setattr(locks._LeaseCalls, "renew", counted)
    monkeypatch.setattr(locks, "RENEW_EVERY_SECONDS", 0.5)
    with locks.server_lock(names[0], timeout_seconds=10):
        time.sleep(1.8)
        assert active_slots(names[0]) == 1
    assert len(renewals) >= 2
    assert active_slots(names[0]) == 0


def test_a_busy_server_is_asked_again_at_once(names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 (a Prefect server on SQLite whose writes met) costs milliseconds, not the client's 2 s back-off."""
    import httpx

    from nmbrs_visma.blocks import locks

    original = locks._LeaseCalls.increment
    answered: list[int] = []

    def busy_twice(calls: locks._LeaseCalls, asked: list[str]) -> dict[str, object]:
        if len(answered) < 2:
            answered.append(503)
            request = httpx.Request("POST", "http://prefect/v2/concurrency_limits/increment-with-lease")
            raise httpx.HTTPStatusError("busy", request=request, response=httpx.Response(503, request=request))
        answered.append(200)
        return original(calls, asked)

    locks.ensure_lock(names[0])
    monkeypatch.setattr(locks._LeaseCalls, "increment", busy_twice)
    started = time.monotonic()
    with locks.server_lock(names[0], timeout_seconds=10):
        assert active_slots(names[0]) == 1
    assert answered == [503, 503, 200]
    assert time.monotonic() - started < 1.5
    assert active_slots(names[0]) == 0


def _hold_once(server_lock: object, name: str, timeout: float) -> float:
    with server_lock(name, timeout_seconds=timeout):  # type: ignore[operator]
        return time.monotonic()


def test_reserved_locks_go_in_one_call_and_those_given_up_are_freed(
    names: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmbrs_visma.blocks.locks import Reservation, ensure_lock, reserve

    for name in names[:8]:
        ensure_lock(name)
    calls = LeaseCalls(monkeypatch)
    reservations = [Reservation(name, timeout_seconds=30) for name in names[:8]]
    reserve(reservations)
    used, unused = reservations[:5], reservations[5:]
    for reservation in used:
        with reservation.hold():
            assert active_slots(reservation.name) == 1
    for reservation in unused:
        reservation.cancel()
    reservations[0].cancel()  # after its hold: nothing more to give up
    assert calls.names == [names[:8]]
    deadline = time.monotonic() + 10
    while any(active_slots(name) for name in names[:8]) and time.monotonic() < deadline:
        time.sleep(0.1)  # the last share given up releases the lease from the broker's thread
    assert [active_slots(name) for name in names[:8]] == [0] * 8


def test_a_reservation_left_unclaimed_is_given_up_after_its_timeout_and_asked_for_again_when_held(
    names: list[str],
) -> None:
    from nmbrs_visma.blocks.locks import Reservation, ensure_lock, reserve

    ensure_lock(names[0])
    forgotten = Reservation(names[0], timeout_seconds=1.0)
    reserve([forgotten])
    time.sleep(0.5)
    assert active_slots(names[0]) == 1
    deadline = time.monotonic() + 10
    while active_slots(names[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert active_slots(names[0]) == 0  # not held forever by a holder that never came
    with forgotten.hold():  # a holder that comes late asks for it afresh
        assert active_slots(names[0]) == 1
    assert active_slots(names[0]) == 0


def test_a_reservation_of_a_missing_limit_creates_it_when_held(names: list[str]) -> None:
    from nmbrs_visma.blocks.locks import Reservation, reserve

    reservation = Reservation(names[0], timeout_seconds=10)
    reserve([reservation])
    with reservation.hold():
        assert active_slots(names[0]) == 1
    assert active_slots(names[0]) == 0
