"""Exactly once across machines: separate worker processes, each with a Prefect home of its own (they share the
Prefect server's API URL and whatever ledger the test points them at, like two machines), posting the demo month
of companies 1001, 1002 and 1003 (five transactions, four of them in one administration) at the same time against
the emulators over real HTTP. Creates take 1.5 s, so the two workers' posting tasks of an administration really
overlap (checked on the Prefect server's task runs), and afterwards Visma.net's ledger holds every transaction
exactly once, to the cent, with five creates in all.

1. one Prefect server, one PostgreSQL ledger: the ledger's advisory locks and rows keep them apart;
2. one Prefect server, each worker on its own default SQLite ledger (in its own Prefect home): only the Prefect
   server's lock per administration, and the look-up under it, keep them apart;
3. one SQLite ledger file shared by two workers of one machine (separate Prefect homes): flocks and rows;
4. PostgreSQL stopped while a worker creates, then started again: the worker reports what it knows (booked but
   not recorded, or not sent, each naming the posting ledger), sends nothing more, and the next run adopts the
   transaction booked while the ledger was down by its key and posts the rest: nothing twice, nothing lost.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nmbrs_visma.journals.keys import administration_id
from nmbrs_visma.posting_ledger import PostingLedger, PostingState
from nmbrs_visma.results import Status, StatusRow
from nmbrs_visma.sandbox.serve import Sandboxes
from nmbrs_visma.settings import env_name
from nmbrs_visma.tasks.posting import administration_lock_name

from .support import (
    LEDGER_ID,
    WorkerProcess,
    api_calls,
    assert_ledger,
    assert_rows_match_ledger,
    company,
    expected_ledger,
    ledger_size,
    task_run_times,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

LEDGER_URL_ENV = env_name("ledger_url")  # each worker's own environment, as an operator sets it

ALL = [1001, 1002, 1003]  # five transactions: 1001 March, 1002 March, 1003 January, February, March
LATENCY = 1.5  # seconds per create: four creates of one administration keep it busy for six seconds
CREATES = ("POST", "/v2/journaltransaction")
ADMINISTRATIONS = sorted({administration_id(company(n).tenant_id, company(n).branch, LEDGER_ID) for n in ALL})

Machine = Callable[..., WorkerProcess]


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    """`machine(name, unset=(), **env)`: a worker (not started) whose Prefect home and output folder are its own,
    under tmp_path/name. Any worker still running at the end is killed."""
    started: list[WorkerProcess] = []

    def make(name: str, *, unset: tuple[str, ...] = (), **env: str) -> WorkerProcess:
        root = tmp_path / name
        env.setdefault("NMBRS_VISMA_OUTPUT_DIR", str(root / "output"))
        worker = WorkerProcess(list(ALL), home=root / "prefect", unset=unset, env=env)
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop()


def keys_of(sandboxes: Sandboxes) -> dict[tuple[int, str], str]:
    """(company, period booked in) -> posting key, from the emulator's own generator."""
    return {(want.company, want.period_id): key for key, want in expected_ledger(sandboxes, ALL).items()}


def race(sandboxes: Sandboxes, first: WorkerProcess, second: WorkerProcess) -> dict[str, tuple[WorkerProcess, str]]:
    """Start both workers at once with slow creates; check what every race must end with; return
    key -> (the worker that sent it, its batch number)."""
    world = sandboxes.visma_world
    world.faults.create_latency = LATENCY
    started = time.monotonic()
    first.start()
    second.start()
    results = [(first, first.rows(timeout=180)), (second, second.rows(timeout=180))]
    took = time.monotonic() - started

    everything = [row for _, rows in results for row in rows]
    ledger = assert_ledger(sandboxes, ALL)  # each of the five exactly once, to the cent, nothing else
    assert_rows_match_ledger(everything, ledger)
    creates = api_calls(world, *CREATES)
    assert len(creates) == 5, [(r.time, r.tenant_id) for r in creates]

    keys = keys_of(sandboxes)
    seen: dict[str, list[tuple[WorkerProcess, StatusRow]]] = defaultdict(list)
    for worker, rows in results:
        assert sorted((r.company, r.period) for r in rows) == sorted(keys), [(r.company, r.period) for r in rows]
        for row in rows:
            seen[keys[(row.company, row.period)]].append((worker, row))
    senders: dict[str, tuple[WorkerProcess, str]] = {}
    for key, reports in seen.items():
        assert sorted(row.status for _, row in reports) == sorted([Status.SENT, Status.ALREADY_SENT]), [
            (row.status, row.reason) for _, row in reports
        ]
        batch = ledger[key][1].batch_number
        assert {row.batch_number for _, row in reports} == {batch}, (key, reports)
        (sender,) = [worker for worker, row in reports if row.status is Status.SENT]
        senders[key] = (sender, batch)

    # the two workers really overlapped: both posted one administration at the same time (one waited for the other)
    spans = [task_run_times(worker.flow_run_id or "", "post-") for worker in (first, second)]
    overlapping = []
    for administration in ADMINISTRATIONS:
        (a_start, a_end), (b_start, b_end) = (span[f"post-{administration}"] for span in spans)
        if a_start < b_end and b_start < a_end:
            overlapping.append(administration)
    assert overlapping, f"the workers did not overlap ({took:.1f}s): {spans}"
    return senders


def assert_shared_ledger(ledger: PostingLedger, senders: dict[str, tuple[WorkerProcess, str]]) -> None:
    """The one ledger both workers used: each key one row, sent, with its batch, written by the worker that sent it."""
    entries = ledger.all_entries()
    assert sorted(e.key for e in entries) == sorted(senders), entries
    for entry in entries:
        sender, batch = senders[entry.key]
        assert (entry.state, entry.batch_number) == (PostingState.SENT, batch), entry
        assert (entry.holder, entry.flow_run_id) == (sender.holder, sender.flow_run_id), entry


def assert_server_locks_free() -> None:
    """The Prefect server's lock of each administration exists (created on demand), has one slot, and is free."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for administration in ADMINISTRATIONS:
            limit = client.read_global_concurrency_limit_by_name(administration_lock_name(administration))
            assert (limit.limit, limit.active, limit.active_slots) == (1, True, 0), limit


def test_two_workers_one_prefect_server_one_postgresql_ledger(
    sandboxes: Sandboxes, machine: Machine, postgres_url: str
) -> None:
    first = machine("a", **{LEDGER_URL_ENV: postgres_url})
    second = machine("b", **{LEDGER_URL_ENV: postgres_url})
    senders = race(sandboxes, first, second)

    ledger = PostingLedger(postgres_url)
    try:
        assert_shared_ledger(ledger, senders)
    finally:
        ledger._engine.dispose()  # the database is dropped after the test
    assert_server_locks_free()


def test_two_workers_each_on_its_own_sqlite_ledger_share_only_the_prefect_server(
    sandboxes: Sandboxes, machine: Machine, workspace: Path
) -> None:
    first = machine("a", unset=(LEDGER_URL_ENV,))
    second = machine("b", unset=(LEDGER_URL_ENV,))
    senders = race(sandboxes, first, second)

    assert not (workspace / "ledger.db").exists()  # nobody used the test's ledger: each had its own
    for worker in (first, second):
        assert worker.home is not None
        path = worker.home / "nmbrs-visma" / "ledger.db"
        assert path.is_file(), f"no default ledger in {worker.home}"
        entries = {e.key: e for e in PostingLedger(f"sqlite:///{path}").all_entries()}
        assert sorted(entries) == sorted(senders), entries
        for key, (sender, batch) in senders.items():
            entry = entries[key]
            assert (entry.state, entry.batch_number, entry.holder) == (PostingState.SENT, batch, worker.holder)
            # what the other worker sent, this one found in Visma.net (its own ledger knew nothing) and adopted
            assert (entry.message == "found in Visma.net by its key") == (sender is not worker), entry
    assert_server_locks_free()


def test_two_workers_of_one_machine_share_one_sqlite_ledger_file(sandboxes: Sandboxes, machine: Machine) -> None:
    url = os.environ[LEDGER_URL_ENV]  # the test's SQLite file (tests/faults/conftest.py), inherited by both
    assert url.startswith("sqlite:///")
    senders = race(sandboxes, machine("a"), machine("b"))
    assert_shared_ledger(PostingLedger(url), senders)


def test_postgresql_stopped_mid_run_then_back_nothing_twice_nothing_lost(
    sandboxes: Sandboxes, machine: Machine, postgres_server, postgres_url: str
) -> None:
    world = sandboxes.visma_world
    world.faults.create_latency = 2 * LATENCY  # the first create's answer comes well after the server has stopped
    keys = keys_of(sandboxes)
    worker = machine("a", **{LEDGER_URL_ENV: postgres_url}).start()
    try:
        wait_until(lambda: len(api_calls(world, *CREATES)) >= 1, 120, "the worker's first create")
        stopping = time.time()
        postgres_server.stop()
        stopped = time.time()
        assert stopped - stopping < world.faults.create_latency, "the stop outlasted the first create"
        rows = worker.rows(timeout=180)
    finally:
        postgres_server.start()

    # what the worker knew: booked but not recorded (in flight when the ledger went), or not sent; each names it
    creates = api_calls(world, *CREATES)
    assert all(r.time < stopped for r in creates), [(r.time - stopped, r.tenant_id) for r in creates]
    assert ledger_size(world) == len(creates)  # every create that went out was booked ...
    ledger = assert_ledger(sandboxes, ALL, complete=False)  # ... once, and nothing else
    assert_rows_match_ledger(rows, ledger)
    assert sorted((r.company, r.period) for r in rows) == sorted(keys), rows
    booked = {keys[(r.company, r.period)]: r for r in rows if r.status is Status.SENT}
    for row in rows:
        assert "posting ledger" in row.reason, row
        if row.status is Status.SENT:
            assert "the next run adopts it by its key" in row.reason, row
        else:
            assert (row.status, row.batch_number) == (Status.FAILED, None), row
    assert booked, rows  # the first create was in flight
    assert sorted(booked) == sorted(key for key in ledger), (booked, ledger)
    assert len(booked) < 5, rows  # the stop came before the last creates

    # PostgreSQL is back: the intent of each transaction booked while it was down survived, its outcome is unknown
    check = PostingLedger(postgres_url)
    try:
        entries = {e.key: e for e in check.all_entries()}
    finally:
        check._engine.dispose()
    assert not [e for e in entries.values() if e.state is not PostingState.INTENT], entries
    assert set(booked) <= set(entries), (sorted(booked), entries)
    for key in booked:  # each intent says who wrote it, in which flow run
        assert (entries[key].holder, entries[key].flow_run_id) == (worker.holder, worker.flow_run_id), entries[key]

    # run again: the ones booked while the ledger was down are adopted by their keys, the rest posted, once each
    world.faults.create_latency = 0.0
    # the first worker has finished, so no create of it is still in flight: an intent it left without a create
    # (the server stopping during its commit) is lost at once instead of waiting out the five-minute settle time
    again = machine("b", **{LEDGER_URL_ENV: postgres_url, env_name("settle_seconds"): "0"}).start().rows(timeout=180)
    ledger = assert_ledger(sandboxes, ALL)  # complete: nothing lost
    assert_rows_match_ledger(again, ledger)
    assert len(api_calls(world, *CREATES)) == 5
    for row in again:
        key = keys[(row.company, row.period)]
        if key in booked:
            assert row.status is Status.ALREADY_SENT, row
            assert row.batch_number == booked[key].batch_number and "found in Visma.net by its key" in row.reason, row
        else:
            assert row.status is Status.SENT and not row.reason, row
    check = PostingLedger(postgres_url)
    try:
        entries = {e.key: e for e in check.all_entries()}
    finally:
        check._engine.dispose()
    assert sorted(entries) == sorted(keys.values())
    assert all(e.state is PostingState.SENT for e in entries.values()), entries
