"""The exactly-once record: each posting key's intent and outcome, on storage every worker shares.

Why: Prefect's task cache is written only after success, and retries re-run side effects, so neither can stop
a second journal transaction. This record can: it is written *before* a create (intent) and *after* it
(outcome), under a per-key lock, in a Prefect `ResultStore` (a storage block for the records, a lock manager
for the keys). A key recorded as sent is never posted again; a key with only an intent (a lost response, a
crash) is looked up in Visma.net by its marker before anything is decided.

Default location: `$NMBRS_VISMA_RECORD_DIR`, else `$PREFECT_HOME/nmbrs-visma/postings` (`records/` and
`locks/` under it). Every worker must see the same directory; see `posting_lock.py` for what "shared" needs.
"""

from __future__ import annotations

import datetime as dt
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

from prefect.filesystems import LocalFileSystem
from prefect.locking.protocol import LockManager
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer
from pydantic import BaseModel, ConfigDict, Field

from nmbrs_visma.posting_lock import FlockLockManager, lock_file_name

logger = logging.getLogger(__name__)

RECORD_DIR_ENV = "NMBRS_VISMA_RECORD_DIR"
LOCK_TIMEOUT_ENV = "NMBRS_VISMA_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 900.0  # seconds a run waits for another run's posting of the same key


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
        self.lock_timeout = (
            lock_timeout if lock_timeout is not None else float(os.environ.get(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT))
        )
        self.store = ResultStore(
            result_storage=LocalFileSystem(basepath=str(self.records_dir)),
            lock_manager=lock_manager or FlockLockManager(self.directory / "locks"),
            serializer=JSONSerializer(),
            cache_result_in_memory=False,
        )

    def get(self, key: str, holder: str | None = None) -> PostingEntry | None:
        """The entry of `key`, or None when there is none or it cannot be read (then a look-up decides)."""
        name = storage_key(key)
        if not self.store.exists(name):
            return None
        try:
            data = self.store.read(name, holder=holder).result
            return PostingEntry.model_validate(data)
        except Exception as exc:  # an unreadable record is treated as no record: the key gets looked up
            logger.warning("posting record %s is unreadable (%s); it will be looked up in Visma.net", key, exc)
            return None

    def put(self, entry: PostingEntry, holder: str) -> None:
        """Write `entry`; the caller must hold the key's lock (see `holding`)."""
        self.store.write(entry.model_dump(mode="json"), key=storage_key(entry.key), holder=holder)

    @contextmanager
    def holding(self, keys: Iterable[str]) -> Iterator[str]:
        """Lock every key (in sorted order, so two runs never deadlock); yield the holder id for `get`/`put`."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex}"
        acquired: list[str] = []
        try:
            for name in sorted({storage_key(key) for key in keys}):
                if not self.store.lock_manager.acquire_lock(name, holder, acquire_timeout=self.lock_timeout):
                    raise LockTimeout(
                        f"posting key {name} stayed locked by another run for {self.lock_timeout:.0f}s; "
                        "nothing was sent for it, run again once that run has finished"
                    )
                acquired.append(name)
            yield holder
        finally:
            for name in reversed(acquired):
                self.store.lock_manager.release_lock(name, holder)

    def entries(self) -> list[PostingEntry]:
        """Every readable entry, for `nmbrs-visma status`."""
        if not self.records_dir.is_dir():
            return []
        found: list[PostingEntry] = []
        for path in sorted(self.records_dir.iterdir()):
            if not path.is_file():
                continue
            try:
                found.append(PostingEntry.model_validate(self.store.read(path.name).result))
            except Exception as exc:
                logger.warning("skipping unreadable posting record %s: %s", path.name, exc)
        return found
