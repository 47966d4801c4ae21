"""Locks the Prefect server grants: global concurrency limits of one slot, made by `config apply` (`ensure_locks`)
or on demand.

The per-account token lock, and the per-administration posting lock (`server_lock`, tasks/posting.py), which
keeps workers that share only the Prefect server from looking up and creating one administration's journals
at the same time. `server_lock` goes through one lease broker per process (one thread, one client): requests
that arrive together share one lease call (the server grants all of a call's limits or none), and a busy
server is asked again after `BUSY_RETRY_SECONDS`, doubled up to a second. Why: on a Prefect server on SQLite
every lease call is a write that contends with the server's own and is answered 503 when it meets another;
the Prefect client would answer that 503 with its own back-off of 2 s and more, and each administration needs
a lease, so calls shared and retried at once keep the lock off the run's critical path (what it cost before
and after: docs/reliability.md).

Why: a refresh token is rotated on use and `Block.save(overwrite=True)` is last-writer-wins, so two runs
(or workers) refreshing one account at once would lose a token pair. Every refresh of a rotating account
(the token refresh task, a client renewing mid-run, `config apply` rewriting the block) holds this lock.
`strict=True`: a missing limit is an error, never silently skipped; `ensure_token_lock` creates it first.
"""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_SECONDS = 120.0
LOCK_LEASE_SECONDS = 60.0  # the Prefect server's shortest lease: how long a dead holder can keep a lock
RENEW_EVERY_SECONDS = LOCK_LEASE_SECONDS / 3  # a live lease is renewed well inside its duration
RETRY_AT_MOST_SECONDS = 1.0  # a lock held elsewhere is asked for again at least this often
BUSY_RETRY_SECONDS = 0.05  # first wait after the server was busy (503 and the like), doubled up to a second
BUSY_STATUSES = frozenset({408, 429, 502, 503})  # the server did nothing: ask again
LOCK_PREFIX = "nmbrs-visma-token-"


def token_lock_name(account_type: type[Block], account: str) -> str:
    """The global concurrency limit that serialises token refreshes of one account block."""
    return f"{LOCK_PREFIX}{account_type.get_block_type_slug()}-{account}"


def ensure_token_lock(account_type: type[Block], account: str) -> str:
    """Create the account's limit (1 slot, active) unless it exists; safe when several workers race to it."""
    return ensure_lock(token_lock_name(account_type, account))


def administration_lock_name(administration: str) -> str:
    """The Prefect global concurrency limit that one administration's look-ups and creates hold."""
    return "nmbrs-visma-post-" + re.sub(r"[^A-Za-z0-9_-]+", "-", administration)


def ensure_lock(name: str) -> str:
    """Create the limit `name` (1 slot, active) unless it exists; safe when several workers race to it."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            existing = None
        _one_slot(client, name, existing)
    return name


def ensure_locks(names: Iterable[str]) -> list[str]:
    """Create every missing limit of `names` (1 slot, active); returns those created. One listing of the
    server's limits, then a call per missing one (the API creates one at a time), so `config apply` makes an
    administration's posting lock before its first run instead of that run making it (a call each, on the
    run's way to its first create)."""
    wanted = set(names)
    if not wanted:
        return []
    with get_client(sync_client=True) as client:
        existing: dict[str, Any] = {}
        offset = 0
        while page := client.read_global_concurrency_limits(limit=_PAGE, offset=offset):
            existing.update((limit.name, limit) for limit in page if limit.name in wanted)
            if len(page) < _PAGE:
                break
            offset += len(page)
        for name in sorted(wanted):
            _one_slot(client, name, existing.get(name))
    return sorted(wanted - set(existing))


_PAGE = 200  # limits per listing call (the Prefect API's largest page)


def _one_slot(client: SyncPrefectClient, name: str, existing: Any) -> None:
    """The limit `name` as a lock: created when missing (`existing` None), set back to 1 slot and active
    when someone edited it in the UI."""
    if existing is None:
        with suppress(ObjectAlreadyExists):  # another worker created it first
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    elif existing.limit != 1 or not existing.active:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))


def _create_limit(name: str) -> None:
    """Create the limit `name` (1 slot), known to be missing; another worker creating it first is fine."""
    try:
        with get_client(sync_client=True) as client:
            _one_slot(client, name, None)
    except Exception as exc:  # the server refused or could not be reached
        raise ConcurrencySlotAcquisitionError(f"Concurrency limit {name!r} could not be created: {exc}") from exc


@contextmanager
def token_lock(
    account_type: type[Block], account: str, *, timeout_seconds: float = LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Hold the account's token lock (created if missing) while the block runs."""
    name = ensure_token_lock(account_type, account)
    with concurrency(name, occupy=1, strict=True, timeout_seconds=timeout_seconds):
        yield


@contextmanager
def server_lock(name: str, *, timeout_seconds: float) -> Iterator[None]:
    """Hold the one slot of limit `name` while the block runs, creating the limit the first time it is missing.
    Raises `AcquireConcurrencySlotTimeoutError` after `timeout_seconds`, `ConcurrencySlotAcquisitionError` when
    the server cannot grant it: before the block runs, in both cases.

    The slot is a lease, renewed while held; a holder that dies (SIGKILL, a lost machine) keeps it until the
    lease lapses (`LOCK_LEASE_SECONDS`, the server's minimum) and the server takes it back. A lease granted
    for several names together is released when the last of them is done, so a lock can outlast its block
    by as long as its neighbours' blocks run."""
    local = _local_lock(name)  # one holder per name in this process: the server sees each name once
    if not local.acquire(timeout=max(0.0, timeout_seconds)):
        raise AcquireConcurrencySlotTimeoutError(
            f"Attempt to acquire concurrency slots timed out after {timeout_seconds} second(s)"
        )
    try:
        with Reservation(name, timeout_seconds=timeout_seconds).hold():
            yield
    finally:
        local.release()


class Reservation:
    """A `server_lock` asked for ahead of its holder, so that the locks of several administrations go to the
    server in one call (`reserve`). `hold()` waits for it and holds it while its block runs; `cancel()` gives
    it up unused (a holder with nothing to do). One left unclaimed past its timeout is given up by itself (a
    holder that never came must not keep it); held after that, it is asked for again, alone."""

    def __init__(self, name: str, *, timeout_seconds: float) -> None:
        self.name = name
        self.timeout_seconds = timeout_seconds
        self._deadline = time.monotonic() + timeout_seconds
        self._broker: _LeaseBroker | None = None
        self._request: _Request | None = None
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"Reservation({self.name!r})"

    def _submit(self) -> _Request | None:
        """The request to put in the broker's inbox, the first time (None after that)."""
        with self._mutex:
            if self._request is not None:
                return None
            self._broker = _broker()
            self._request = _Request(self.name, self._deadline, self.timeout_seconds)
            return self._request

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Wait for the lock (raising as `server_lock` does, before the block runs) and hold it."""
        if (request := self._submit()) is not None:
            assert self._broker is not None
            self._broker.submit([request])
        assert self._broker is not None and self._request is not None
        broker = self._broker
        created = asked_again = False
        while True:
            try:
                lease = broker.claim(self._request)
            except _Lapsed:
                if asked_again:
                    raise
                asked_again = True  # given up while its holder was still on its way: asked for afresh
                self._deadline = time.monotonic() + self.timeout_seconds
                self._request = _Request(self.name, self._deadline, self.timeout_seconds)
                broker.submit([self._request])
                continue
            if lease is not None:
                break
            if created:  # missing again, just after it was created
                raise ConcurrencySlotAcquisitionError(f"Concurrency limit {self.name!r} could not be created")
            _create_limit(self.name)  # in the caller's thread: the broker's stays free for the others' calls
            created = True
            self._request = _Request(self.name, self._deadline, self.timeout_seconds)
            broker.submit([self._request])
        try:
            yield
        finally:
            broker.release(lease)

    def cancel(self) -> None:
        """Give the lock up if it was never held (no-op once `hold` has run)."""
        with self._mutex:
            request, broker = self._request, self._broker
        if request is not None and broker is not None:
            broker.cancel(request)


def reserve(reservations: Sequence[Reservation]) -> None:
    """Ask for every reservation at once: the broker sends them in one lease call."""
    requests = [request for reservation in reservations if (request := reservation._submit()) is not None]
    if requests:
        _broker().submit(requests)


_local_locks: dict[str, threading.Lock] = {}
_brokers: dict[tuple[int, str], _LeaseBroker] = {}
_registry = threading.Lock()


def _local_lock(name: str) -> threading.Lock:
    with _registry:
        return _local_locks.setdefault(name, threading.Lock())


def _broker() -> _LeaseBroker:
    """This process's broker for the Prefect API in the current settings (a test can switch servers)."""
    from prefect.settings import PREFECT_API_URL

    key = (os.getpid(), str(PREFECT_API_URL.value() or ""))
    with _registry:
        broker = _brokers.get(key)
        if broker is None:
            broker = _brokers[key] = _LeaseBroker(contextvars.copy_context())
        return broker


class _Lapsed(AcquireConcurrencySlotTimeoutError):
    """A reservation given up before its holder claimed it (past its timeout, or cancelled)."""


@dataclass(eq=False)
class _Lease:
    """A lease of the server's, shared by the names granted in one call; released when none holds it."""

    lease_id: UUID
    holders: int
    renewed: float = field(default_factory=time.monotonic)


@dataclass(eq=False)
class _Request:
    name: str
    deadline: float
    timeout_seconds: float
    done: threading.Event = field(default_factory=threading.Event)
    lease: _Lease | None = None
    error: BaseException | None = None
    not_before: float = 0.0  # held elsewhere: asked for again from then
    alone: bool = False  # refused within a group: asked for on its own, so the others are not held up
    busy: int = 0  # calls the server could not answer so far
    claimed: bool = False  # its holder has taken it (under `_LeaseBroker._counts`)
    cancelled: bool = False  # given up unclaimed (under `_LeaseBroker._counts`)

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


@dataclass(eq=False)
class _Release:
    lease: _Lease
    done: threading.Event = field(default_factory=threading.Event)


class _LeaseBroker:
    """Makes every lease call of one process from one thread, with one client: acquisitions that arrive
    together go in one call, leases are renewed while held, and released when their last holder is done."""

    def __init__(self, context: contextvars.Context) -> None:
        self._inbox: queue.SimpleQueue[list[_Request] | _Release] = queue.SimpleQueue()
        self._waiting: list[_Request] = []  # refused for now: asked for again at `not_before`
        self._leases: set[_Lease] = set()
        self._unclaimed: list[_Request] = []  # granted, not yet held or given up
        self._counts = threading.Lock()
        self._client: _LeaseCalls
        self._thread = threading.Thread(target=context.run, args=(self._run,), daemon=True, name="nmbrs-visma-leases")
        self._thread.start()

    def submit(self, requests: list[_Request]) -> None:
        self._inbox.put(requests)

    def claim(self, request: _Request) -> _Lease | None:
        """Wait for the request's answer: its lease, None when the limit does not exist, or the error."""
        if not request.done.wait(request.timeout_seconds + LOCK_LEASE_SECONDS):  # the broker's thread is gone
            raise ConcurrencySlotAcquisitionError(f"Unable to acquire concurrency slots on {[request.name]!r}")
        with self._counts:
            request.claimed = True
            cancelled = request.cancelled
        if request.error is not None:
            raise request.error
        if cancelled:  # given up unclaimed past its timeout
            raise _Lapsed(
                f"Concurrency slot on {request.name!r} was reserved but not claimed within {request.timeout_seconds}s"
            )
        return request.lease

    def cancel(self, request: _Request) -> None:
        """Give up a request not claimed: its share of a lease goes back at once, or as soon as it is granted."""
        with self._counts:
            if request.claimed or request.cancelled:
                return
            request.cancelled = True
            lease = request.lease
            last = lease is not None and self._drop_share(lease)
        if last:
            assert lease is not None
            self._give_back(lease)

    def _give_back(self, lease: _Lease) -> None:
        """Release a lease no one holds any more, and wait for it (a process about to exit must not leave it
        to lapse); on the broker's own thread, right away."""
        release = _Release(lease)
        if threading.current_thread() is self._thread:
            self._release(self._client, release)
            return
        self._inbox.put(release)
        release.done.wait(LOCK_LEASE_SECONDS)  # a release that fails lapses with its lease

    def _drop_share(self, lease: _Lease) -> bool:
        """One holder less (under `_counts`); True when that was the last."""
        lease.holders -= 1
        return lease.holders == 0

    def release(self, lease: _Lease) -> None:
        with self._counts:
            last = self._drop_share(lease)
        if last:
            self._give_back(lease)

    # -- the broker's thread --

    def _run(self) -> None:
        with get_client(sync_client=True) as client:
            self._client = calls = _LeaseCalls(client)
            while True:
                self._step(calls)

    def _step(self, client: _LeaseCalls) -> None:
        now = time.monotonic()
        wakes = [r.not_before for r in self._waiting] + [lease.renewed + RENEW_EVERY_SECONDS for lease in self._leases]
        wakes += [r.deadline for r in self._unclaimed]
        try:
            first = self._inbox.get(timeout=max(0.0, min(wakes) - now) if wakes else None)
        except queue.Empty:
            first = None
        arrived = [first] if first is not None else []
        with suppress(queue.Empty):
            while True:
                arrived.append(self._inbox.get_nowait())
        for item in arrived:
            if isinstance(item, _Release):
                self._release(client, item)
            else:
                self._waiting.extend(r for r in item if not r.cancelled)
        now = time.monotonic()
        ready = [r for r in self._waiting if r.not_before <= now]
        self._waiting = [r for r in self._waiting if r.not_before > now]
        for request in (r for r in ready if r.cancelled):  # given up before it was granted: not asked for
            request.done.set()
        ready = [r for r in ready if not r.cancelled]
        try:
            # split before any call: a group refused now is marked `alone` and waits for the next step, it
            # must not also be asked for again in this one (that request would be granted twice)
            alone = [r for r in ready if r.alone]
            if together := [r for r in ready if not r.alone]:
                self._grant(client, together)
            for request in alone:
                self._grant(client, [request])
        except Exception as exc:  # never leave a caller waiting on a broker that stopped answering
            logger.exception("the lease broker failed; the lock requests in hand are refused")
            for request in ready:
                if not request.done.is_set() and request not in self._waiting:
                    request.fail(ConcurrencySlotAcquisitionError(f"Unable to acquire {request.name!r}: {exc}"))
        self._renew(client)

    def _grant(self, client: _LeaseCalls, requests: list[_Request]) -> None:
        names = [r.name for r in requests]
        try:
            body = client.increment(names)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in BUSY_STATUSES:
                self._busy(requests)
                return
            if exc.response.status_code != 423:
                for request in requests:
                    request.fail(
                        ConcurrencySlotAcquisitionError(f"Unable to acquire concurrency slots on {[request.name]!r}")
                    )
                return
            wait = float(exc.response.headers.get("Retry-After") or 1)  # float ok: seconds
            self._held_elsewhere(requests, min(wait, RETRY_AT_MOST_SECONDS))
            return
        except httpx.TransportError:
            self._busy(requests)
            return
        except httpx.HTTPError as exc:
            for request in requests:
                request.fail(
                    ConcurrencySlotAcquisitionError(f"Unable to acquire concurrency slots on {[request.name]!r}: {exc}")
                )
            return
        granted = {limit["name"] for limit in body.get("limits", [])}
        mine = [r for r in requests if r.name in granted]
        if mine:
            lease = _Lease(UUID(body["lease_id"]), holders=len(mine))
            with self._counts:
                for request in mine:
                    request.lease = lease
                    if request.cancelled:  # given up while it was being asked for
                        self._drop_share(lease)
                idle = lease.holders == 0
            if idle:
                self._release(client, _Release(lease))
            else:
                self._leases.add(lease)
                self._unclaimed += [r for r in mine if not r.cancelled]
        for request in requests:  # a name not granted has no limit yet: its caller creates it, then asks again
            request.done.set()

    def _busy(self, requests: list[_Request]) -> None:
        """The server did not answer the call (busy, or out of reach for a moment): ask again soon, with the
        same requests and whatever arrives meanwhile, until a request's deadline."""
        now = time.monotonic()
        jitter = random.uniform(0.5, 1.0)  # one for the call: its requests are asked for again together
        for request in requests:
            request.busy += 1
            wait = min(BUSY_RETRY_SECONDS * 2 ** (request.busy - 1), 1.0) * jitter
            if now + wait > request.deadline:
                request.fail(ConcurrencySlotAcquisitionError(f"Unable to acquire {request.name!r}: the server is busy"))
            else:
                request.not_before = now + wait
                self._waiting.append(request)

    def _held_elsewhere(self, requests: list[_Request], wait: float) -> None:
        """Refused: one of the names is held by another worker. Alone, a request waits and asks again; in a
        group, each is asked for on its own next, so one busy name does not hold up the others."""
        now = time.monotonic()
        for request in requests:
            if len(requests) > 1:
                request.alone = True
                self._waiting.append(request)
            elif now + wait > request.deadline:
                request.fail(
                    AcquireConcurrencySlotTimeoutError(
                        f"Attempt to acquire concurrency slots timed out after {request.timeout_seconds} second(s)"
                    )
                )
            else:
                request.not_before = now + wait
                self._waiting.append(request)

    def _release(self, client: _LeaseCalls, release: _Release) -> None:
        self._leases.discard(release.lease)
        try:
            _patiently(lambda: client.release(release.lease.lease_id))
        except Exception as exc:  # a release that fails lapses with its lease
            logger.warning(
                "could not release lease %s (%s): it lapses within %ss", release.lease.lease_id, exc, LOCK_LEASE_SECONDS
            )
        release.done.set()

    def _renew(self, client: _LeaseCalls) -> None:
        now = time.monotonic()
        for request in [r for r in self._unclaimed if not r.claimed and not r.cancelled and r.deadline <= now]:
            logger.warning(
                "lock %s was reserved but not held within %ss: given up", request.name, request.timeout_seconds
            )
            self.cancel(request)
        self._unclaimed = [r for r in self._unclaimed if not r.claimed and not r.cancelled]
        for lease in list(self._leases):
            if now - lease.renewed >= RENEW_EVERY_SECONDS:
                with suppress(Exception):  # a missed renewal is retried on the next tick, well inside the lease
                    _patiently(lambda lease=lease: client.renew(lease.lease_id))
                lease.renewed = now


class _LeaseCalls:
    """The three lease calls, each sent once. Not through the client's methods: its `send` answers a 503 by
    sleeping 2 s and more before the next try (and even after the last one), and a Prefect server on SQLite
    answers 503 whenever a write meets another (SQLITE_BUSY_SNAPSHOT), which would hold up every lock of the
    process; the broker asks again after `BUSY_RETRY_SECONDS` instead. The request is built and sent by the client's
    own httpx client (its base URL, authentication and CSRF token), only without that retry loop."""

    def __init__(self, client: SyncPrefectClient) -> None:
        self._http = client._client

    def _post(self, path: str, body: dict[str, object]) -> httpx.Response:
        request = self._http.build_request("POST", path, json=body)
        if self._http.enable_csrf_support:
            self._http._add_csrf_headers(request)
        response = httpx.Client.send(self._http, request)
        response.raise_for_status()
        return response

    def increment(self, names: list[str]) -> dict[str, Any]:
        body = {"names": names, "slots": 1, "mode": "concurrency", "lease_duration": LOCK_LEASE_SECONDS}
        return self._post("/v2/concurrency_limits/increment-with-lease", body).json()

    def release(self, lease_id: UUID) -> None:
        self._post("/v2/concurrency_limits/decrement-with-lease", {"lease_id": str(lease_id)})

    def renew(self, lease_id: UUID) -> None:
        self._post(f"/v2/concurrency_limits/leases/{lease_id}/renew", {"lease_duration": LOCK_LEASE_SECONDS})


def _patiently(call: Callable[[], object], seconds: float = 30.0) -> None:
    """`call`, asked again quickly while the server is busy (see `_LeaseBroker._run`), for up to `seconds`
    (about as long as the client's own retries would have waited)."""
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        try:
            call()
            return
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code not in BUSY_STATUSES or time.monotonic() > deadline:
                raise
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(min(BUSY_RETRY_SECONDS * 2**attempt, 1.0) * random.uniform(0.5, 1.0))
        attempt += 1
