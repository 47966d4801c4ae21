"""A Prefect `LockManager` on OS file locks (`flock`): the key locks of a SQLite posting ledger.

Why not `prefect.locking.filesystem.FileSystemLockManager`: its lock is the *existence* of a file, so a worker
killed while holding it (SIGKILL, OOM, a reboot) leaves the key locked forever, unless a hold timeout is set,
and then a slow create (a long `Retry-After`) can outlive the timeout and let a second worker in. A kernel
`flock` is released the moment its holder dies and is never released while it lives: exactly what a "one
create per posting key" guard needs. Each acquisition opens its own file description, so threads of one
process exclude each other too. The lock files stay in place (unlinking a flock'ed file is racy).

SQLite is one machine's database, and these locks hold for every worker on that machine. Workers on several
machines use a PostgreSQL ledger, whose own advisory locks take this module's place (posting_ledger.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import threading
import time
from pathlib import Path

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_POLL_SECONDS = 0.05


def lock_file_name(key: str) -> str:
    """A file name for `key`: readable, and unique even when two keys differ only in unsafe characters."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"{_SAFE_NAME.sub('_', key)[:100]}.{digest}.lock"


class FlockLockManager:
    """Implements `prefect.locking.protocol.LockManager` with one `flock`-ed file per key under `directory`.

    `hold_timeout` is accepted for the protocol but not applied: the lock lives exactly as long as its holder
    (or until `release_lock`), never shorter.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self._held: dict[str, tuple[str, int]] = {}  # key -> (holder, fd)
        self._mutex = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.directory / lock_file_name(key)

    def _try_lock(self, key: str) -> int | None:
        """Open the key's lock file and try an exclusive lock without blocking; return the fd or None."""
        try:
            fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # the first lock of this directory
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        with self._mutex:
            held = self._held.get(key)
            if held is not None and held[0] == holder:
                return True
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while True:
            fd = self._try_lock(key)
            if fd is not None:
                with self._mutex:
                    self._held[key] = (holder, fd)
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while True:
            if self.acquire_lock(key, holder, acquire_timeout=0):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_SECONDS)

    def release_lock(self, key: str, holder: str) -> None:
        with self._mutex:
            held = self._held.get(key)
            if held is None or held[0] != holder:
                raise ValueError(f"no lock held by {holder!r} for key {key!r}")
            del self._held[key]
        fcntl.flock(held[1], fcntl.LOCK_UN)  # explicit: a forked child may share the open file description
        os.close(held[1])

    def is_locked(self, key: str) -> bool:
        with self._mutex:
            if key in self._held:
                return True
        fd = self._try_lock(key)
        if fd is None:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with self._mutex:
            held = self._held.get(key)
        return held is not None and held[0] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL_SECONDS)
        return True
