"""Locks the Prefect server grants: global concurrency limits of one slot, created on demand.

The per-account token lock, and the per-administration posting lock (`server_lock`, tasks/posting.py), which
keeps workers that share only the Prefect server from looking up and creating one administration's journals
at the same time.

Why: a refresh token is rotated on use and `Block.save(overwrite=True)` is last-writer-wins, so two runs
(or workers) refreshing one account at once would lose a token pair. Every refresh of a rotating account
(the token refresh task, a client renewing mid-run, `config apply` rewriting the block) holds this lock.
`strict=True`: a missing limit is an error, never silently skipped; `ensure_token_lock` creates it first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from uuid import UUID

import httpx
from prefect.blocks.core import Block
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

LOCK_TIMEOUT_SECONDS = 120.0
LOCK_LEASE_SECONDS = 60.0  # the Prefect server's shortest lease: how long a dead holder can keep a lock
_server_calls = threading.Lock()  # one lease call at a time per process: concurrent ones contend in the server's DB
LOCK_PREFIX = "nmbrs-visma-token-"


def token_lock_name(account_type: type[Block], account: str) -> str:
    """The global concurrency limit that serialises token refreshes of one account block."""
    return f"{LOCK_PREFIX}{account_type.get_block_type_slug()}-{account}"


def ensure_token_lock(account_type: type[Block], account: str) -> str:
    """Create the account's limit (1 slot, active) unless it exists; safe when several workers race to it."""
    return ensure_lock(token_lock_name(account_type, account))


def ensure_lock(name: str) -> str:
    """Create the limit `name` (1 slot, active) unless it exists; safe when several workers race to it."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another worker created it first
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            return name
        if existing.limit != 1 or not existing.active:  # someone edited it in the UI: a lock has one slot
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))
    return name


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

    Through the client's lease calls rather than `concurrency()`: two requests per hold (acquire, release), no
    events and no renewal thread unless the hold outlasts a third of its lease. The slot is a lease; a holder
    that dies (SIGKILL, a lost machine) keeps it until the lease lapses (`LOCK_LEASE_SECONDS`, the server's
    minimum) and the server takes it back."""
    with get_client(sync_client=True) as client:
        lease_id = _acquire(client, name, timeout_seconds)
        renewed = threading.Event()
        renewer = threading.Thread(target=_renew, args=(client, lease_id, renewed), daemon=True, name=f"lease-{name}")
        renewer.start()
        try:
            yield
        finally:
            renewed.set()
            renewer.join()
            with suppress(Exception), _server_calls:  # a release that fails lapses with its lease
                client.release_concurrency_slots_with_lease(lease_id)


def _acquire(client: SyncPrefectClient, name: str, timeout_seconds: float) -> UUID:
    deadline = time.monotonic() + timeout_seconds
    created = False
    while True:
        try:
            with _server_calls:
                response = client.increment_concurrency_slots_with_lease(
                    names=[name], slots=1, mode="concurrency", lease_duration=LOCK_LEASE_SECONDS
                )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 423:
                raise ConcurrencySlotAcquisitionError(f"Unable to acquire concurrency slots on {[name]!r}") from exc
            wait = float(exc.response.headers.get("Retry-After") or 1)  # float ok: seconds
            if time.monotonic() + min(wait, 1.0) > deadline:
                raise AcquireConcurrencySlotTimeoutError(
                    f"Attempt to acquire concurrency slots timed out after {timeout_seconds} second(s)"
                ) from None
            time.sleep(min(wait, 1.0, max(0.05, deadline - time.monotonic())))
            continue
        except httpx.HTTPError as exc:
            raise ConcurrencySlotAcquisitionError(f"Unable to acquire concurrency slots on {[name]!r}: {exc}") from exc
        body = response.json()
        if body.get("limits"):
            return UUID(body["lease_id"])
        if created:
            raise ConcurrencySlotAcquisitionError(f"Concurrency limit {name!r} could not be created")
        with _server_calls:
            ensure_lock(name)
        created = True


def _renew(client: SyncPrefectClient, lease_id: UUID, done: threading.Event) -> None:
    while not done.wait(LOCK_LEASE_SECONDS / 3):
        with suppress(Exception):  # a missed renewal is retried on the next tick, well inside the lease
            client.renew_concurrency_lease(lease_id, lease_duration=LOCK_LEASE_SECONDS)
