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

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from functools import partial

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

LOCK_TIMEOUT_SECONDS = 120.0
LOCK_LEASE_SECONDS = 60.0  # the Prefect server's shortest lease: how long a dead holder can keep a lock
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
    """Hold the one slot of limit `name` while the block runs, creating the limit the first time it is missing
    (two calls to the server when it exists: acquire and release). Raises
    `AcquireConcurrencySlotTimeoutError` after `timeout_seconds`, `ConcurrencySlotAcquisitionError` when the
    server cannot grant it: before the block runs, in both cases.

    The slot is a lease the holder renews while it runs; a holder that dies (SIGKILL, a lost machine) keeps it
    until the lease lapses (`LOCK_LEASE_SECONDS`, the server's minimum) and the server takes it back."""
    hold = partial(
        concurrency, name, occupy=1, strict=True, timeout_seconds=timeout_seconds, lease_duration=LOCK_LEASE_SECONDS
    )
    with ExitStack() as stack:
        try:
            stack.enter_context(hold())
        except ConcurrencySlotAcquisitionError as exc:
            if "must be created" not in str(exc):
                raise
            ensure_lock(name)
            stack.enter_context(hold())
        yield
