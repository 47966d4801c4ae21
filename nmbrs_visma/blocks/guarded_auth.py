"""Auth classes whose mid-run token renewal takes the account's token lock and re-reads the block first.

Why: the token refresh task renews tokens before a run, but a long run (or a 401) makes the client renew on
its own. Without the lock that renewal could race another run's: both spend the same one-time refresh
token, and one of them saves a dead pair. Here a renewal waits for the lock, re-loads the block, and adopts
the token another run saved meanwhile if it is still valid; only otherwise does it refresh (and the
block's `store_token` saves the new pair at once, still under the lock).

The adoption replaces the auth object's held token (`_token`, private to the client modules): the only
way to hand an auth object a newer pair, and covered by tests/blocks/test_tokens.py.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nmbrs_visma.blocks.locks import token_lock
from nmbrs_visma.clients.nmbrs import NmbrsAuth
from nmbrs_visma.clients.visma_connect import VismaConnectAuth

if TYPE_CHECKING:
    from nmbrs_visma.blocks.oauth import OAuthAccount

_FRESH = dt.timedelta(seconds=90)  # an adopted token must outlive the auth classes' renewal leeway


def _newer_saved_token(account_type: type[OAuthAccount], name: str, held: str | None) -> dict[str, Any] | None:
    """The block's token when another run saved a different, still valid one; else None."""
    saved = account_type.load(name, _sync=True)
    if saved.access_token is None or saved.access_token.get_secret_value() == held:
        return None
    return saved.token_dict() if saved.access_token_valid(margin=_FRESH) else None


class _Guarded:
    """The part both guarded auth classes share; `_token` and `_lock` are the auth classes' own."""

    _token: dict[str, Any] | None
    _lock: threading.RLock

    def __init__(self, *, account_type: type[OAuthAccount], account: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self._account_type = account_type
        self._account = account

    def _guarded(self, stale: str | None, renew: Callable[[], None]) -> None:
        """Under the account's lock: skip if `stale` was already replaced here, adopt a newer saved pair, or renew."""
        with self._lock, token_lock(self._account_type, self._account):
            held = (self._token or {}).get("access_token")
            if stale is not None and self._token is not None and held != stale:
                return
            newer = _newer_saved_token(self._account_type, self._account, held)
            if newer is not None:
                self._token = newer
                return
            renew()


class GuardedNmbrsAuth(_Guarded, NmbrsAuth):
    """`NmbrsAuth` for a saved account block: one refresh per account at a time across processes."""

    def refresh(self, *, unless_changed_from: str | None = None) -> None:
        self._guarded(unless_changed_from, lambda: NmbrsAuth.refresh(self, unless_changed_from=unless_changed_from))


class GuardedVismaConnectAuth(_Guarded, VismaConnectAuth):
    """`VismaConnectAuth` for a saved interactive account block: one refresh per account at a time."""

    def renew(self, *, stale: str | None = None) -> None:
        self._guarded(stale, lambda: VismaConnectAuth.renew(self, stale=stale))
