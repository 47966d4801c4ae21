"""Token refresh: one refresh per account at a time, across concurrent runs and workers.

Why a lock: a refresh token is rotated on use, and `Block.save(overwrite=True)` is last-writer-wins. Two runs
refreshing the same account at once would each spend the same refresh token and the block would keep
whichever pair was saved last, possibly a dead one. So the refresh takes the account's token lock (a Prefect
global concurrency limit of one slot, created on demand, `strict=True`; see blocks/locks.py), re-loads the
block *after* acquiring it (another run may have refreshed meanwhile), refreshes only when still needed, and
saves the rotated pair at once (the auth classes hand every new pair to the block's `store_token`).

A grant that is gone (refresh token revoked, expired, already used; never connected) raises
`ReconnectRequired`, whose text names the account and the command that fixes it; the flows turn it into a
`not_authorised` refusal. A client id/secret the token endpoint refuses raises `AccountNotAuthorised`.
No token or secret is ever part of a message.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Literal, TypeVar

from prefect import task
from prefect.states import State

from nmbrs_visma.accounts import AccountState, AccountStatus, account_status
from nmbrs_visma.blocks.locks import LOCK_TIMEOUT_SECONDS, token_lock
from nmbrs_visma.blocks.nmbrs import NmbrsAccount
from nmbrs_visma.blocks.oauth import OAuthAccount, utc_now
from nmbrs_visma.blocks.visma_net import VismaNetAccount
from nmbrs_visma.clients.errors import AuthError
from nmbrs_visma.journals.models import Refusal

System = Literal["visma", "nmbrs"]
ACCOUNT_TYPES: dict[str, type[OAuthAccount]] = {"visma": VismaNetAccount, "nmbrs": NmbrsAccount}
DEFAULT_MARGIN = dt.timedelta(minutes=10)

A = TypeVar("A", bound=OAuthAccount)


class AccountNotAuthorised(Exception):
    """An account cannot get a token; `action` says what a person must do. Never carries a secret."""

    def __init__(self, system: str, account: str, reason: str, action: str) -> None:
        self.system = system
        self.account = account
        self.reason = reason
        self.action = action
        super().__init__(f"{system} account '{account}' is not authorised: {reason}; {action}")

    def refusal(self, company: int | None = None) -> Refusal:
        """The `not_authorised` refusal for a company that depends on this account."""
        return Refusal(code="not_authorised", message=str(self), company=company)


class ReconnectRequired(AccountNotAuthorised):
    """The grant is gone (refresh token revoked, expired, used, or never obtained): connect the account again."""

    def __init__(self, account_type: type[OAuthAccount], account: str, reason: str) -> None:
        super().__init__(
            account_type.system_name,
            account,
            reason,
            f"connect it again: `{account_type.connect_command} --account {account}`",
        )


def missing_account(account_type: type[OAuthAccount], account: str) -> AccountNotAuthorised:
    """The error for an account block that is not saved: it names the block and how to add it."""
    return AccountNotAuthorised(
        account_type.system_name,
        account,
        f"there is no {account_type.get_block_type_name()} block named '{account}'",
        "add it with `nmbrs-visma config apply` (or in the Prefect UI)",
    )


def load_account(account_type: type[A], account: str) -> A:
    """The saved account block; a missing one is an `AccountNotAuthorised` naming it."""
    try:
        return account_type.load(account, _sync=True)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc):
            raise
        raise missing_account(account_type, account) from None


def needs_refresh(account: OAuthAccount, margin: dt.timedelta) -> bool:
    return not account.access_token_valid(margin=margin)


def check_grant(account: OAuthAccount, name: str) -> None:
    """Refuse early, without a call, when the stored grant cannot work."""
    if not account.uses_refresh_token:
        return
    if account.refresh_token is None:
        raise ReconnectRequired(type(account), name, "it holds no refresh token (never connected, or revoked)")
    if isinstance(account, NmbrsAccount):
        expires = account.refresh_token_expires_at
        if expires is not None and expires <= utc_now():
            raise ReconnectRequired(
                NmbrsAccount,
                name,
                f"its refresh token lapsed on {expires:%Y-%m-%d} "
                f"(unused for {account.refresh_token_lifetime_days} days)",
            )


_GRANT_DEAD = ("invalid_grant", "refresh_token_expired")  # the OAuth error codes (clients/oauth.py) of a dead grant
_CLIENT_REFUSED = ("invalid_client", "unauthorized_client")


def renew_token(account: OAuthAccount, name: str) -> None:
    """Get a new token through the account's auth class, which saves it to the block at once.

    The caller holds the account's token lock (so the auth is the unguarded one).
    """
    try:
        account.renew_token()
    except AuthError as exc:
        if exc.code in _GRANT_DEAD:
            account.forget_tokens()  # the grant is dead: say so in the block, not only in this run
            if account._block_document_name is not None:
                account.save(overwrite=True, _sync=True)
            raise ReconnectRequired(
                type(account), name, "its refresh token was refused (revoked, already used or expired)"
            ) from None
        if exc.code in _CLIENT_REFUSED:
            raise AccountNotAuthorised(
                account.system_name,
                name,
                "the token endpoint refused the client id or secret",
                "check them in the block (or in the file for `nmbrs-visma config apply`)",
            ) from None
        raise


def ensure_fresh_token(
    account_type: type[A],
    account: str,
    *,
    margin: dt.timedelta = DEFAULT_MARGIN,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> tuple[A, bool]:
    """The account block with an access token valid for at least `margin`, and whether this call renewed it.

    Renews under the account's token lock, re-loading the block after acquiring it.
    """
    current = load_account(account_type, account)
    if not needs_refresh(current, margin):
        return current, False
    check_grant(current, account)
    if not current.uses_refresh_token:  # client credentials: nothing rotates, so nothing to serialise
        renew_token(current, account)
        return current, True
    with token_lock(account_type, account, timeout_seconds=lock_timeout):
        current = load_account(account_type, account)  # another run may have renewed while we waited
        if not needs_refresh(current, margin):
            return current, False
        check_grant(current, account)
        renew_token(current, account)
        return current, True


@dataclass(frozen=True)
class TokenStatus:
    """What the refresh did, without any secret: safe to log, to return from a task and to show."""

    system: str
    account: str
    refreshed: bool
    access_token_expires_at: dt.datetime | None
    refresh_token_expires_at: dt.datetime | None = None


@task(
    name="refresh-token",
    task_run_name="refresh-token-{system}-{account}",
    cache_policy=None,
    persist_result=False,
)
def refresh_token(system: System, account: str, margin_minutes: float = 10.0) -> TokenStatus:
    """Make the account's access token valid for `margin_minutes` or more; one refresh per account at a time."""
    account_type = ACCOUNT_TYPES[system]
    block, refreshed = ensure_fresh_token(account_type, account, margin=dt.timedelta(minutes=margin_minutes))
    refresh_expires = block.refresh_token_expires_at if isinstance(block, NmbrsAccount) else None
    return TokenStatus(block.system_name, account, refreshed, block.access_token_expires_at, refresh_expires)


# -- keeping refresh tokens alive (the keep-alive flow) ------------------------------------------------------


def refresh_token_due(account: OAuthAccount, renew_within: dt.timedelta) -> bool:
    """True when the account lives on a refresh token that lapses within `renew_within` (or whose issue time is
    unknown, so its lapse is too): renewing it now restarts its lifetime. A service account is never due."""
    if not account.uses_refresh_token:
        return False
    expires = account.refresh_token_expires_at
    return expires is None or expires - utc_now() < renew_within


def keep_refresh_token_alive(
    account_type: type[A],
    account: str,
    *,
    renew_within: dt.timedelta,
    lock_timeout: float = LOCK_TIMEOUT_SECONDS,
) -> tuple[A, bool]:
    """Renew the account's refresh token when it lapses within `renew_within`; the block, and whether this renewed.

    The same discipline as `ensure_fresh_token`: under the account's token lock, the block re-loaded after the
    lock is held (another run may have renewed meanwhile), renewed only when still due, the rotated pair saved
    at once. A dead grant raises `ReconnectRequired` (and the block forgets its tokens, as `renew_token` does).
    """
    current = load_account(account_type, account)
    if not refresh_token_due(current, renew_within):
        return current, False
    check_grant(current, account)
    with token_lock(account_type, account, timeout_seconds=lock_timeout):
        current = load_account(account_type, account)
        if not refresh_token_due(current, renew_within):
            return current, False
        check_grant(current, account)
        renew_token(current, account)
        return current, True


def _transient(task: object, task_run: object, state: State) -> bool:
    """Retry a keep-alive only when the failure may pass (network, a busy server): never an account refused."""
    try:
        state.result()
    except AccountNotAuthorised:
        return False
    except Exception:
        return True
    return False


@task(
    name="keep-refresh-token-alive",
    task_run_name="keep-alive-{system}-{account}",
    cache_policy=None,
    persist_result=False,
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_transient,
)
def keep_token_alive(system: System, account: str, renew_within_days: float) -> AccountStatus:
    """Renew the account's refresh token if it lapses within `renew_within_days`; its status after, with a note
    saying what was done. A dead grant is a status that needs `connect` (not an error); a client the token
    endpoint refuses raises `AccountNotAuthorised`."""
    account_type = ACCOUNT_TYPES[system]
    try:
        block, renewed = keep_refresh_token_alive(
            account_type, account, renew_within=dt.timedelta(days=renew_within_days)
        )
    except ReconnectRequired as exc:
        status = account_status(load_account(account_type, account), account)
        return dataclasses.replace(status, state=AccountState.NEEDS_CONNECT, note=exc.reason)
    status = account_status(block, account)
    left = "" if status.refresh_days_left is None else f": {status.refresh_text}"
    return status.with_note(("renewed" if renewed else f"not due (renews under {renew_within_days:g} days)") + left)
