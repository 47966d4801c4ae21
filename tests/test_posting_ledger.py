"""The posting ledger (nmbrs_visma/posting_ledger.py) on both backends: SQLite (a file) and PostgreSQL (slow).

What must hold for "exactly once": a row reads back exactly as written (amounts to the cent, state, batch,
timestamps with a zone) by every instance and process; a write is an upsert and all-or-nothing; `holding`
excludes other threads and processes, times out with `LockTimeout`, never deadlocks on key order, and a holder
killed with SIGKILL frees its keys at once; on PostgreSQL, a stopped server is a `LedgerUnavailable` naming
the ledger (never its password) and a restarted one is used again by the same instance; workers creating the
table at the same moment all succeed.

Other processes come from a `forkserver` that has imported the ledger module once (importing the package pulls
in Prefect, ~2 s): each child is a fresh process (no engine, connection or lock inherited from the test
process), started in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from nmbrs_visma.posting_ledger import (
    POSTINGS,
    LedgerUnavailable,
    LockTimeout,
    PostingEntry,
    PostingLedger,
    PostingState,
)
from tests.support import dispose_engine

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext, ForkServerProcess
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier, Event

    from postgres import PostgresServer

    Events = Queue[tuple[str, float]]

WAIT = 15.0  # seconds any single expected event may take before the test fails (never reached when it passes)


# -- helpers ---------------------------------------------------------------------------------------------------


def _entry(key: str = "k1", fingerprint: str = "f1", **changes: Any) -> PostingEntry:
    """A journal entry with every field set to something a wrong column mapping would not reproduce."""
    fields: dict[str, Any] = {
        "key": key,
        "fingerprint": fingerprint,
        "kind": "journal",
        "state": PostingState.INTENT,
        "company": 4_200_000_001,  # beyond int32: the column must be a BIGINT
        "reference": "RUN-2024-03",
        "payroll_period": "202403",
        "period_id": "202404",
        "administration": "tenant-1/branch-2/ledger-3",
        "lines": 12,
        "debit": Decimal("1234.56"),
        "credit": Decimal("-1234.56"),
        "holder": "tester:1",
        "flow_run_id": "0b5c3c1e-run",
        "message": "about to create",
    }
    fields.update(changes)
    return PostingEntry(**fields)


def _content(entry: PostingEntry) -> dict[str, Any]:
    """Everything the caller chose (updated_at is set by the ledger at write time)."""
    return entry.model_dump(exclude={"updated_at"})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _next(events: Events, timeout: float = WAIT) -> tuple[str, float]:
    return events.get(timeout=timeout)


def _expect(events: Events, name: str, timeout: float = WAIT) -> float:
    event, at = _next(events, timeout)
    assert event == name, f"expected {name!r}, got {event!r}"
    return at


def _assert_quiet(events: Events, seconds: float) -> None:
    """Nothing arrives for `seconds`: the process is still waiting."""
    try:
        got = events.get(timeout=seconds)
    except queue.Empty:
        return
    pytest.fail(f"expected the process to wait, it reported {got!r}")


# -- what child processes run (module level: the forkserver's children import it by name) -------------------


def _hold_in_child(url: str, keys: list[str], lock_timeout: float, events: Events, release: Event) -> None:
    """Hold `keys` until `release` is set; report attempt / acquired / releasing / released, or timeout."""
    ledger = PostingLedger(url, lock_timeout=lock_timeout)
    events.put(("attempt", time.time()))
    try:
        with ledger.holding(keys):
            events.put(("acquired", time.time()))
            release.wait(60)
            events.put(("releasing", time.time()))
    except LockTimeout:
        events.put(("timeout", time.time()))
        return
    events.put(("released", time.time()))


def _first_use_in_child(url: str, key: str, start: Barrier, results: Queue[tuple[str, str]]) -> None:
    """Use a fresh ledger (creating its table) at the same moment as the other children."""
    ledger = PostingLedger(url, lock_timeout=WAIT)
    start.wait(WAIT)
    try:
        ledger.entries([key])
        with ledger.holding([key]) as held:
            held.put(_entry(key))
    except Exception as exc:
        results.put((key, f"{type(exc).__name__}: {exc}"))
    else:
        results.put((key, "ok"))


def _read_in_child(url: str, keys: list[str], results: Queue[list[dict[str, Any]]]) -> None:
    results.put([entry.model_dump() for found in PostingLedger(url).entries(keys).values() for entry in found])


# -- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processes() -> ForkServerContext:
    """Fresh processes, forked from a server process that imported the ledger (and this module) once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["nmbrs_visma.posting_ledger", __name__])
    return context


@pytest.fixture
def children() -> Iterator[list[ForkServerProcess]]:
    """Processes a test starts; any still running at the end are killed."""
    started: list[ForkServerProcess] = []
    yield started
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(WAIT)


def _start(
    processes: ForkServerContext, children: list[ForkServerProcess], target: Callable[..., None], *args: Any
) -> ForkServerProcess:
    process = processes.Process(target=target, args=args, daemon=True)
    process.start()
    children.append(process)
    return process


def _start_holder(
    processes: ForkServerContext,
    children: list[ForkServerProcess],
    url: str,
    keys: list[str],
    lock_timeout: float = WAIT,
) -> tuple[ForkServerProcess, Events, Event]:
    events: Events = processes.Queue()
    release = processes.Event()
    process = _start(processes, children, _hold_in_child, url, keys, lock_timeout, events, release)
    return process, events, release


# -- 1. round trip ---------------------------------------------------------------------------------------------


def test_an_entry_reads_back_exactly_everywhere(ledger_url: str, processes: ForkServerContext) -> None:
    ledger = PostingLedger(ledger_url)
    intent = _entry("k1", "f1", debit=Decimal("1234.56"), credit=Decimal("-1234.56"))
    sent = intent.model_copy(
        update={"state": PostingState.SENT, "batch_number": "000123", "released": True, "message": "created"}
    )
    other = _entry(
        "k1",
        "f2",
        kind="reversal",
        reverses="000099",
        debit=Decimal("9999999999999.99"),  # the largest amount money.py allows: exact only without floats
        credit=Decimal("-0.01"),
        flow_run_id=None,
    )
    before = _now()
    with ledger.holding(["k1"]) as held:
        assert held.keys == ("k1",)
        assert held.entries() == {}
        held.put(intent)
        (read,) = held.entries()["k1"]
        assert read.state is PostingState.INTENT and read.batch_number is None
        held.put(sent, other)
    after = _now()

    for view in (ledger, PostingLedger(ledger_url)):  # the same instance, and a fresh one on the same URL
        found = view.entries(["k1", "missing"])
        assert set(found) == {"k1"}  # a key without rows is left out
        rows = {entry.fingerprint: entry for entry in found["k1"]}
        assert set(rows) == {"f1", "f2"}  # two fingerprints under one key: two rows
        assert _content(rows["f1"]) == _content(sent)
        assert _content(rows["f2"]) == _content(other)
        assert rows["f1"].state is PostingState.SENT
        assert (rows["f1"].batch_number, rows["f1"].released) == ("000123", True)
        assert (rows["f2"].kind, rows["f2"].reverses, rows["f2"].flow_run_id) == ("reversal", "000099", None)
        for entry, debit, credit in ((rows["f1"], "1234.56", "-1234.56"), (rows["f2"], "9999999999999.99", "-0.01")):
            assert isinstance(entry.debit, Decimal) and isinstance(entry.credit, Decimal)
            assert (str(entry.debit), str(entry.credit)) == (debit, credit)  # to the cent, not 1234.5600000001
            assert entry.updated_at.utcoffset() is not None  # timezone-aware
            assert before <= entry.updated_at <= after

    listed = sorted(ledger.all_entries(), key=lambda entry: entry.fingerprint)
    assert [(entry.key, entry.fingerprint) for entry in listed] == [("k1", "f1"), ("k1", "f2")]
    assert [_content(entry) for entry in listed] == [_content(sent), _content(other)]

    results: Queue[list[dict[str, Any]]] = processes.Queue()  # another process, its own engine
    child = processes.Process(target=_read_in_child, args=(ledger_url, ["k1"], results))
    child.start()
    seen = {row["fingerprint"]: row for row in results.get(timeout=WAIT)}
    child.join(WAIT)
    assert {fingerprint: PostingEntry(**row) for fingerprint, row in seen.items()} == {
        entry.fingerprint: entry for entry in listed
    }


def test_mark_reversed_changes_only_that_row(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url)
    sent = _entry("k1", "f1", state=PostingState.SENT, batch_number="000123")
    sibling = _entry("k1", "f2", state=PostingState.SENT, batch_number="000124")
    with ledger.holding(["k1"]) as held:
        held.put(sent, sibling)
        held.mark_reversed("k1", "f1", by="000200")
        rows = {entry.fingerprint: entry for entry in held.entries()["k1"]}
    assert rows["f1"].state is PostingState.REVERSED
    assert rows["f1"].message == "reversed by batch 000200"
    assert rows["f1"].batch_number == "000123"  # the batch that was reversed stays known
    assert _content(rows["f2"]) == _content(sibling)


# -- 2. upsert, all or nothing ---------------------------------------------------------------------------------


def _timestamps(url: str) -> dict[tuple[str, str], tuple[dt.datetime, dt.datetime]]:
    """created_at and updated_at of every row, read with an engine of our own (the ledger does not expose them)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(POSTINGS.c.key, POSTINGS.c.fingerprint, POSTINGS.c.created_at, POSTINGS.c.updated_at)
            )
            return {(row.key, row.fingerprint): (row.created_at, row.updated_at) for row in rows}
    finally:
        engine.dispose()


def test_writing_a_row_again_replaces_it(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url)
    intent = _entry("k1", "f1")
    sent = intent.model_copy(
        update={
            "state": PostingState.SENT,
            "batch_number": "000123",
            "released": True,
            "message": "created",
            "lines": 13,
            "debit": Decimal("-5.05"),
            "holder": "tester:2",
        }
    )
    with ledger.holding(["k1"]) as held:
        held.put(intent)
        first = _timestamps(ledger_url)[("k1", "f1")]
        held.put(sent)
    (row,) = ledger.entries(["k1"])["k1"]
    assert _content(row) == _content(sent)
    created, updated = _timestamps(ledger_url)[("k1", "f1")]
    assert created == first[0]  # the first write's time survives the upsert
    assert updated > first[1]


def test_completed_runs_are_recorded_per_company_and_recorded_again_replaced(ledger_url: str) -> None:
    from nmbrs_visma.posting_ledger import CompletedRun

    ledger = PostingLedger(ledger_url)
    first = CompletedRun(
        run_id="r1", company=1001, year=2026, period_end=13, period_type="4-weeks", reference="NM2613R1", transactions=2
    )
    other = first.model_copy(update={"run_id": "r2", "company": 1002, "period_type": "month", "period_end": 3})
    assert ledger.completed_runs([1001, 1002]) == {1001: [], 1002: []}
    ledger.complete_runs([first, other])
    again = first.model_copy(update={"transactions": 3, "flow_run_id": "flow-2"})
    ledger.complete_runs([again])
    assert ledger.completed_runs([1001, 1002, 1003]) == {1001: [again], 1002: [other], 1003: []}
    # another process (a second worker) reads what this one recorded
    assert PostingLedger(ledger_url).completed_runs([1001]) == {1001: [again]}


def test_a_multi_row_put_writes_all_rows(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url)
    entries = [_entry(f"k{number}", f"f{fingerprint}") for number in range(3) for fingerprint in range(2)]
    with ledger.holding(["k0", "k1", "k2"]) as held:
        held.put(*entries)
    found = ledger.entries(["k0", "k1", "k2"])
    assert {(entry.key, entry.fingerprint) for rows in found.values() for entry in rows} == {
        (entry.key, entry.fingerprint) for entry in entries
    }


def test_an_outcome_put_later_is_written_with_the_next_write_or_before_the_locks_go(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url)
    sent = _entry("k1", state=PostingState.SENT, batch_number="000001")
    with ledger.holding(["k1", "k2"]) as held:
        held.put(_entry("k1", state=PostingState.INTENT))
        held.put(sent, later=True)
        assert ledger.entries(["k1"])["k1"][0].state is PostingState.INTENT  # held back
        held.put(_entry("k2", state=PostingState.INTENT))  # the next create's intent takes it along
        assert ledger.entries(["k1"])["k1"][0].state is PostingState.SENT
        held.put(_entry("k2", state=PostingState.SENT, batch_number="000002"), later=True)
        assert ledger.entries(["k2"])["k2"][0].state is PostingState.INTENT
    assert ledger.entries(["k2"])["k2"][0].batch_number == "000002"  # written before the keys were unlocked


def test_a_failing_put_writes_nothing_and_leaves_the_keys_usable(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url)
    existing = _entry("k1", "f1")
    with ledger.holding(["k1", "k2", "k3"]) as held:
        held.put(existing)
        update = existing.model_copy(update={"state": PostingState.SENT, "batch_number": "000123"})
        new = _entry("k2", "f1")
        with warnings.catch_warnings():  # pydantic warns when dumping the unvalidated None below
            warnings.simplefilter("ignore")
            broken = _entry("k3", "f1").model_copy(update={"reference": None})  # NOT NULL on both backends
            with pytest.raises(LedgerUnavailable):
                held.put(update, new, broken)  # the bad row is last: the first two must be undone too
        assert {key: [_content(entry) for entry in rows] for key, rows in held.entries().items()} == {
            "k1": [_content(existing)]
        }
        held.put(update, new)  # the held connection was rolled back, not left in a failed transaction
    assert {key: [entry.state for entry in rows] for key, rows in ledger.entries(["k1", "k2", "k3"]).items()} == {
        "k1": [PostingState.SENT],
        "k2": [PostingState.INTENT],
    }


# -- 3. mutual exclusion ---------------------------------------------------------------------------------------


def test_a_second_process_waits_for_the_holder(
    ledger_url: str, processes: ForkServerContext, children: list[ForkServerProcess]
) -> None:
    PostingLedger(ledger_url).entries([])  # the table exists before the children race for the lock
    _, first, release_first = _start_holder(processes, children, ledger_url, ["k"])
    _expect(first, "attempt")
    _expect(first, "acquired")
    _, second, release_second = _start_holder(processes, children, ledger_url, ["k"])
    _expect(second, "attempt")
    _assert_quiet(second, 0.6)  # blocked: the first still holds "k"
    release_first.set()
    releasing = _expect(first, "releasing")
    acquired = _expect(second, "acquired")
    assert acquired >= releasing
    release_second.set()
    _expect(second, "releasing")
    _expect(second, "released")


def test_a_second_process_times_out(
    ledger_url: str, processes: ForkServerContext, children: list[ForkServerProcess]
) -> None:
    PostingLedger(ledger_url).entries([])
    _, first, release_first = _start_holder(processes, children, ledger_url, ["k"])
    _expect(first, "attempt")
    _expect(first, "acquired")
    _, second, _ = _start_holder(processes, children, ledger_url, ["k", "other"], lock_timeout=0.5)
    attempt = _expect(second, "attempt")
    timed_out = _expect(second, "timeout")
    assert 0.5 <= timed_out - attempt < 5
    release_first.set()
    _expect(first, "releasing")
    _expect(first, "released")
    # the timed-out process released "other" on its way out; and "k" is free now
    with PostingLedger(ledger_url, lock_timeout=2).holding(["k", "other"]) as held:
        assert held.keys == ("k", "other")


def test_threads_exclude_each_other(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url, lock_timeout=WAIT)
    log: list[tuple[str, float]] = []
    first_holds, release_first = threading.Event(), threading.Event()

    def first() -> None:
        with ledger.holding(["k"]):
            log.append(("first acquired", time.monotonic()))
            first_holds.set()
            release_first.wait(WAIT)
            log.append(("first releasing", time.monotonic()))

    def second() -> None:
        log.append(("second attempt", time.monotonic()))
        with ledger.holding(["k"]):
            log.append(("second acquired", time.monotonic()))

    one = threading.Thread(target=first)
    one.start()
    assert first_holds.wait(WAIT)
    two = threading.Thread(target=second)
    two.start()
    time.sleep(0.5)
    assert [event for event, _ in log] == ["first acquired", "second attempt"]  # the second waits
    release_first.set()
    one.join(WAIT)
    two.join(WAIT)
    assert [event for event, _ in log] == ["first acquired", "second attempt", "first releasing", "second acquired"]
    assert log[3][1] >= log[2][1]


def test_a_second_thread_times_out(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url, lock_timeout=0.3)
    with ledger.holding(["k"]):
        outcome: list[BaseException | None] = []

        def second() -> None:
            try:
                with ledger.holding(["k"]):
                    outcome.append(None)
            except LockTimeout as exc:
                outcome.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(WAIT)
        waited = time.monotonic() - started
    assert len(outcome) == 1 and isinstance(outcome[0], LockTimeout)
    assert "posting key k" in str(outcome[0])
    assert 0.3 <= waited < 5
    with ledger.holding(["k"]) as held:  # free again once the holder left
        assert held.keys == ("k",)


# -- 4. a killed holder ----------------------------------------------------------------------------------------


def test_a_killed_holder_releases_its_keys(
    ledger_url: str, processes: ForkServerContext, children: list[ForkServerProcess]
) -> None:
    PostingLedger(ledger_url).entries([])
    holder, first, _ = _start_holder(processes, children, ledger_url, ["a", "k"])
    _expect(first, "attempt")
    _expect(first, "acquired")
    _, second, release_second = _start_holder(processes, children, ledger_url, ["k"], lock_timeout=WAIT)
    _expect(second, "attempt")
    _assert_quiet(second, 0.5)
    killed = time.time()
    holder.kill()  # SIGKILL: no finally, no unlock, no connection close
    holder.join(WAIT)
    assert holder.exitcode == -9
    acquired = _expect(second, "acquired", timeout=WAIT)
    assert acquired - killed < 3, f"the key stayed locked {acquired - killed:.1f}s after its holder died"
    release_second.set()
    _expect(second, "releasing")
    with PostingLedger(ledger_url, lock_timeout=2).holding(["a"]):  # the dead holder's other key is free too
        pass


# -- 5. PostgreSQL outage --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_stopped_postgres_is_unavailable_and_a_restarted_one_is_used_again(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    url = postgres_url.replace("://postgres@", "://postgres:s3cret@", 1)  # trust auth ignores the password
    ledger = PostingLedger(url, lock_timeout=2)
    written = _entry("k1", "f1", state=PostingState.SENT, batch_number="000123")
    try:
        with ledger.holding(["k1"]) as held:
            held.put(written)
        stopped = False
        try:
            postgres_server.stop()
            stopped = True
            calls: dict[str, Callable[[], object]] = {
                "entries": lambda: ledger.entries(["k1"]),
                "all_entries": ledger.all_entries,
                "holding": lambda: ledger.holding(["k1"]).__enter__(),
                "a fresh instance": lambda: PostingLedger(url).entries(["k1"]),
            }
            for name, call in calls.items():
                with pytest.raises(LedgerUnavailable) as raised:
                    call()
                message = str(raised.value)
                assert f"/{postgres_url.rsplit('/', 1)[1]}" in message, name
                assert f"{postgres_server.host}:{postgres_server.port}" in message, name
                assert "postgres:***@" in message, name
                assert "s3cret" not in message, name
        finally:
            postgres_server.start()
        assert stopped
        assert [_content(entry) for entry in ledger.entries(["k1"])["k1"]] == [_content(written)]
        with ledger.holding(["k1"]) as held:
            held.put(written.model_copy(update={"released": True}))
        assert ledger.entries(["k1"])["k1"][0].released is True
    finally:
        dispose_engine(url)


@pytest.mark.slow
def test_postgres_stopping_while_a_key_is_held(postgres_server: PostgresServer, postgres_url: str) -> None:
    ledger = PostingLedger(postgres_url, lock_timeout=2)
    try:
        try:
            with pytest.raises(LedgerUnavailable), ledger.holding(["k1"]) as held:
                held.put(_entry("k1", "f1"))
                postgres_server.stop()
                with pytest.raises(LedgerUnavailable):
                    held.entries()
                held.put(_entry("k1", "f1", state=PostingState.SENT))  # leaving the block must not fail otherwise
        finally:
            postgres_server.start()
        with ledger.holding(["k1"]) as held:  # the lock died with the server's session
            assert [entry.state for entry in held.entries()["k1"]] == [PostingState.INTENT]
    finally:
        dispose_engine(postgres_url)


# -- 6. concurrent first use -----------------------------------------------------------------------------------


def test_processes_creating_the_table_at_once_all_succeed(
    ledger_url: str, processes: ForkServerContext, children: list[ForkServerProcess]
) -> None:
    count = 4
    start = processes.Barrier(count)
    results: Queue[tuple[str, str]] = processes.Queue()
    keys = [f"k{number}" for number in range(count)]
    for key in keys:
        _start(processes, children, _first_use_in_child, ledger_url, key, start, results)
    outcomes = dict(results.get(timeout=WAIT) for _ in keys)
    assert outcomes == dict.fromkeys(keys, "ok")
    assert sorted(PostingLedger(ledger_url).entries(keys)) == keys
    engine = sa.create_engine(ledger_url, poolclass=NullPool)
    try:
        indexes = {index["name"] for index in sa.inspect(engine).get_indexes(POSTINGS.name)}
    finally:
        engine.dispose()
    assert "ix_nmbrs_visma_postings_company_period" in indexes


# -- 7. sorted keys ------------------------------------------------------------------------------------------------


def test_keys_in_opposite_orders_never_deadlock(ledger_url: str) -> None:
    ledger = PostingLedger(ledger_url, lock_timeout=3)
    ledger.entries([])
    lock_one = ledger._lock

    def lock_slowly(connection: sa.Connection, key: str, holder: str) -> None:
        lock_one(connection, key, holder)
        time.sleep(0.01)  # widen the gap between one key and the next: keys taken in call order would deadlock

    ledger._lock = lock_slowly  # type: ignore[method-assign]
    rounds = 8
    together = threading.Barrier(2, timeout=WAIT)
    done: list[str] = []
    failures: list[BaseException] = []

    def run(name: str, keys: list[str]) -> None:
        try:
            for _ in range(rounds):
                together.wait()  # both threads go for their first key at the same moment
                with ledger.holding(keys) as held:
                    assert held.keys == ("a", "b")
                    held.entries()
            done.append(name)
        except BaseException as exc:
            failures.append(exc)
            together.abort()

    threads = [threading.Thread(target=run, args=args) for args in (("ba", ["b", "a"]), ("ab", ["a", "b"]))]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert failures == []
    assert sorted(done) == ["ab", "ba"]
    assert time.monotonic() - started < 10
