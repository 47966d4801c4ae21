"""The exactly-once record: each posting key's intent and outcome, on storage every worker shares.

Why: Prefect's task cache is written only after success, and retries re-run side effects, so neither can stop
a second journal transaction. This record can: it is written *before* a create (intent) and *after* it
(outcome), under a per-key lock (a Prefect `LockManager`: posting_lock.py), as one file per key in Prefect's
result-record layout (so Prefect's `ResultStore` reads them too), written whole: a temporary file renamed over
the old one. Written directly rather than through `ResultStore`, whose two dozen system calls per write each
gave up the interpreter lock and, in a busy run, waited to get it back. A key recorded as sent is never
posted again; a key with only an intent (a lost response, a crash) is looked up in Visma.net by its marker
before anything is decided.

Default location: `$NMBRS_VISMA_RECORD_DIR`, else `$PREFECT_HOME/nmbrs-visma/postings` (`records/` and
`locks/` under it). Every worker must see the same directory; see `posting_lock.py` for what "shared" needs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from prefect.locking.protocol import LockManager
from prefect.results import ResultRecordMetadata
from prefect.serializers import JSONSerializer
from pydantic import BaseModel, ConfigDict, Field

from nmbrs_visma.posting_lock import FlockLockManager, lock_file_name

logger = logging.getLogger(__name__)

RECORD_DIR_ENV = "NMBRS_VISMA_RECORD_DIR"
LOCK_TIMEOUT_ENV = "NMBRS_VISMA_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 900.0  # seconds a run waits for another run's posting of the same key
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


class PostingState(StrEnum):
    INTENT = "intent"  # a create is about to be (or was) sent; its outcome is not known
    SENT = "sent"  # Visma.net holds the transaction (created by us, or found by its marker)
    REJECTED = "rejected"  # Visma.net answered with a definite refusal: nothing was created


class PostingEntry(BaseModel):
    """What the record holds for one posting key (one journal transaction of one company, run and period)."""

    model_config = ConfigDict(frozen=True)

    key: str
    state: PostingState
    company: int
    run_id: str
    reference: str
    administration: str = Field(description="tenant/branch/ledger")
    period_id: str
    lines: int
    debit: Decimal
    credit: Decimal
    batch_number: str | None = None
    released: bool = False
    message: str = ""
    flow_run_id: str | None = None
    updated_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))


class LockTimeout(RuntimeError):
    """Another run held a posting key longer than the lock timeout; nothing was decided for that key."""


def _read_whole(path: Path) -> bytes:
    """A small file's bytes with as few system calls as can be (each one gives up the interpreter lock)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(descriptor, 1 << 16)]
        while len(chunks[-1]) == 1 << 16:  # a record is about 1 KB; a bigger file is read to its end
            chunks.append(os.read(descriptor, 1 << 16))
    finally:
        os.close(descriptor)
    return b"".join(chunks)


def default_record_dir() -> Path:
    if configured := os.environ.get(RECORD_DIR_ENV):
        return Path(configured).expanduser()
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser() / "nmbrs-visma" / "postings"


def storage_key(posting_key: str) -> str:
    """The record's (and lock's) name for a posting key: file-name safe and unique."""
    return lock_file_name(posting_key).removesuffix(".lock")


class PostingRecord:
    """Read, write and lock posting keys. Thread-safe; one instance may serve a whole flow run."""

    def __init__(
        self,
        directory: Path | None = None,
        *,
        lock_manager: LockManager | None = None,
        lock_timeout: float | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_record_dir()
        self.records_dir = self.directory / "records"
        if lock_timeout is None:
            lock_timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))  # float ok: seconds
        self.lock_timeout = lock_timeout
        self.lock_manager: LockManager = lock_manager or FlockLockManager(self.directory / "locks")
        self._metadata = ResultRecordMetadata(
            storage_key=None, expiration=None, serializer=JSONSerializer(), storage_block_id=None
        ).model_dump(mode="json")

    def peek(self, key: str) -> PostingEntry | None:
        """The entry of `key` as last written, without waiting for a run that holds the key: enough to skip a
        key already sent (a sent entry is final), not to decide anything else (use `get` under `holding`)."""
        return self._read_or_none(key, self.records_dir / storage_key(key))

    def get(self, key: str, holder: str | None = None) -> PostingEntry | None:
        """The entry of `key`, or None when there is none or it cannot be read (then a look-up decides).

        Without `holder` (or when another run holds the key), it first waits for that run to let go."""
        name = storage_key(key)
        path = self.records_dir / name
        if holder is None or not self.lock_manager.is_lock_holder(name, holder):
            self.lock_manager.wait_for_lock(name, timeout=self.lock_timeout)
        return self._read_or_none(key, path)

    def _read_or_none(self, key: str, path: Path) -> PostingEntry | None:
        try:
            return self._read(path)
        except FileNotFoundError:
            return None
        except Exception as exc:  # an unreadable record is treated as no record: the key gets looked up
            logger.warning("posting record %s is unreadable (%s); it will be looked up in Visma.net", key, exc)
            return None

    def put(self, entry: PostingEntry, holder: str) -> None:
        """Write `entry` (whole or not at all: a temporary file renamed over the old one); the caller must hold
        the key's lock (see `holding`)."""
        name = storage_key(entry.key)
        if not self.lock_manager.is_lock_holder(name, holder) and self.lock_manager.is_locked(name):
            raise RuntimeError(f"Cannot write posting record {name} because it is locked by another holder.")
        path = self.records_dir / name
        document = {
            "metadata": {**self._metadata, "storage_key": str(path)},
            "result": json.dumps(entry.model_dump(mode="json")),
        }
        partial = path.with_name(f".{name}.{uuid.uuid4().hex}.partial")
        try:
            descriptor = os.open(partial, _NEW_FILE, 0o644)
        except FileNotFoundError:  # the first write of this record directory
            self.records_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(partial, _NEW_FILE, 0o644)
        try:
            os.write(descriptor, json.dumps(document).encode("utf-8"))
        finally:
            os.close(descriptor)
        os.replace(partial, path)

    @staticmethod
    def _read(path: Path) -> PostingEntry:
        """A record file: Prefect's result-record layout (`ResultStore` reads it too), the entry as JSON text."""
        document = json.loads(_read_whole(path))
        return PostingEntry.model_validate(json.loads(document["result"]))

    @contextmanager
    def holding(self, keys: Iterable[str]) -> Iterator[str]:
        """Lock every key (in sorted order, so two runs never deadlock); yield the holder id for `get`/`put`."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex}"
        acquired: list[str] = []
        try:
            for name in sorted({storage_key(key) for key in keys}):
                if not self.lock_manager.acquire_lock(name, holder, acquire_timeout=self.lock_timeout):
                    raise LockTimeout(
                        f"posting key {name} stayed locked by another run for {self.lock_timeout:.0f}s; "
                        "nothing was sent for it, run again once that run has finished"
                    )
                acquired.append(name)
            yield holder
        finally:
            for name in reversed(acquired):
                self.lock_manager.release_lock(name, holder)

    def entries(self) -> list[PostingEntry]:
        """Every readable entry, for `nmbrs-visma status`."""
        if not self.records_dir.is_dir():
            return []
        found: list[PostingEntry] = []
        for path in sorted(self.records_dir.iterdir()):
            if not path.is_file() or path.name.startswith("."):  # a write in progress
                continue
            try:
                found.append(self._read(path))
            except Exception as exc:
                logger.warning("skipping unreadable posting record %s: %s", path.name, exc)
        return found
