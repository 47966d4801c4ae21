"""The exactly-once record and its lock, without Prefect runs or HTTP: the ground the posting task stands on."""

from __future__ import annotations

import multiprocessing
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from nmbrs_visma.posting_lock import FlockLockManager
from nmbrs_visma.posting_record import LockTimeout, PostingEntry, PostingRecord, PostingState


def _entry(key: str, state: PostingState, **changes: object) -> PostingEntry:
    values: dict[str, object] = dict(
        key=key,
        state=state,
        company=1001,
        run_id="run-1",
        reference="NM2603R3",
        administration="1000001/1/L",
        period_id="202603",
        lines=12,
        debit=Decimal("1234.56"),
        credit=Decimal("1234.56"),
    )
    values.update(changes)
    return PostingEntry(**values)  # type: ignore[arg-type]


def test_record_round_trips_an_entry_exactly(tmp_path: Path) -> None:
    record = PostingRecord(tmp_path)
    assert record.get("a" * 20) is None
    with record.holding(["a" * 20]) as holder:
        record.put(_entry("a" * 20, PostingState.INTENT), holder)
        record.put(_entry("a" * 20, PostingState.SENT, batch_number="000042"), holder)
    again = PostingRecord(tmp_path).get("a" * 20)  # a fresh instance: read from storage, not memory
    assert again is not None
    assert again.state is PostingState.SENT
    assert again.batch_number == "000042"
    assert again.debit == Decimal("1234.56")
    assert [entry.key for entry in PostingRecord(tmp_path).entries()] == ["a" * 20]


def test_records_keep_prefects_result_record_layout_both_ways(tmp_path: Path) -> None:
    """Records written before (through Prefect's ResultStore) still read, and Prefect reads today's."""
    from prefect.filesystems import LocalFileSystem
    from prefect.results import ResultStore
    from prefect.serializers import JSONSerializer

    from nmbrs_visma.posting_record import storage_key

    record = PostingRecord(tmp_path)
    store = ResultStore(
        result_storage=LocalFileSystem(basepath=str(record.records_dir)),
        serializer=JSONSerializer(),
        cache_result_in_memory=False,
    )
    old = _entry("d" * 20, PostingState.SENT, batch_number="000007")
    store.write(old.model_dump(mode="json"), key=storage_key(old.key))
    assert record.get(old.key) == old

    new = _entry("e" * 20, PostingState.INTENT)
    with record.holding([new.key]) as holder:
        record.put(new, holder)
    assert PostingEntry.model_validate(store.read(storage_key(new.key)).result) == new
    assert sorted(path.name.startswith(".") for path in record.records_dir.iterdir()) == [False, False]


def test_peek_reads_the_last_written_entry_without_waiting_for_its_holder(tmp_path: Path) -> None:
    """A sent entry is final, so a run may skip it while another run still holds the key; `get` waits."""
    record = PostingRecord(tmp_path, lock_timeout=5)
    assert record.peek("e" * 20) is None  # nothing written yet, not even the directory
    with record.holding(["e" * 20]) as holder:
        record.put(_entry("e" * 20, PostingState.SENT, batch_number="000007"), holder)
        other = PostingRecord(tmp_path, lock_timeout=5)  # another run's view of the same storage
        started = time.monotonic()
        peeked = other.peek("e" * 20)
        assert time.monotonic() - started < 1
        assert peeked is not None and peeked.state is PostingState.SENT and peeked.batch_number == "000007"
        waiting = threading.Thread(target=other.get, args=("e" * 20,))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive()  # `get` waits for the holder to let go
    waiting.join(5)
    assert not waiting.is_alive()


def test_a_write_without_the_lock_is_refused_while_another_holder_has_it(tmp_path: Path) -> None:
    record = PostingRecord(tmp_path)
    with record.holding(["b" * 20]), pytest.raises(RuntimeError, match="locked by another holder"):
        record.put(_entry("b" * 20, PostingState.SENT), "someone-else")


def test_an_unreadable_record_counts_as_no_record(tmp_path: Path) -> None:
    record = PostingRecord(tmp_path)
    with record.holding(["c" * 20]) as holder:
        record.put(_entry("c" * 20, PostingState.SENT), holder)
    (path,) = list(record.records_dir.iterdir())
    path.write_bytes(path.read_bytes()[:40])  # a crash mid-write
    assert record.get("c" * 20) is None  # so the key gets looked up in Visma.net instead of trusted


def test_lock_excludes_other_threads_and_times_out(tmp_path: Path) -> None:
    record = PostingRecord(tmp_path, lock_timeout=0.3)
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with record.holding(["d" * 20]):
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait(5)
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="stayed locked"), record.holding(["d" * 20]):
        pass
    assert time.monotonic() - started >= 0.3
    release.set()
    thread.join()
    with record.holding(["d" * 20]):  # free again once the holder is done
        pass


def _hold_and_die(directory: str, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    manager = FlockLockManager(Path(directory))
    manager.acquire_lock("key", "dying-holder")
    ready.set()
    time.sleep(60)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    """A worker SIGKILLed while holding a key must not block the key for ever (the kernel drops its flock)."""
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    process = context.Process(target=_hold_and_die, args=(str(tmp_path), ready))
    process.start()
    assert ready.wait(10)
    manager = FlockLockManager(tmp_path)
    assert manager.is_locked("key")
    assert not manager.acquire_lock("key", "me", acquire_timeout=0.2)
    process.kill()
    process.join()
    assert manager.acquire_lock("key", "me", acquire_timeout=2)
    assert manager.is_lock_holder("key", "me")
    manager.release_lock("key", "me")


def test_a_record_larger_than_one_read_round_trips(tmp_path: Path) -> None:
    record = PostingRecord(tmp_path)
    long_message = "x" * 200_000  # a record is about 1 KB; an outsized one is still read to its end
    with record.holding(["f" * 20]) as holder:
        record.put(_entry("f" * 20, PostingState.REJECTED, message=long_message), holder)
    entry = PostingRecord(tmp_path).get("f" * 20)
    assert entry is not None and entry.message == long_message
