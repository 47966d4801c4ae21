"""The OAuth 2.0 part both account blocks share: client settings and the current token pair, saved at once.

Why one base: a rotated refresh token is valid exactly once, so every place that receives a new token pair
(the token refresh task, `connect`, a client renewing mid-run) must write it back to the block the moment it
arrives. `store_token` is that one place; `token_dict` hands the pair to the auth (clients/oauth.py), and
`SavedAccountGuard` is the auth's guard for a saved block: a renewal mid-run takes the account's token lock (a
Prefect global concurrency limit) and re-reads the block first, so that it adopts the pair another run saved
meanwhile instead of spending the refresh token that run already spent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from prefect.blocks.abstract import CredentialsBlock
from pydantic import Field, SecretStr

from nmbrs_visma.blocks.schema import CachedJsonSchema

if TYPE_CHECKING:
    from nmbrs_visma.clients.oauth import OAuth2Auth, TokenCallback, TokenGuard

_STORE_LOCK = threading.Lock()  # one client may be shared by a thread pool; keep the fields and the save together

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"
FILLED_IN = "Filled in by `nmbrs-visma connect` and each renewal: leave it as it is."

# The block form's order (blocks/schema.py): who the account is, then the endpoints, then the token fields.
TOKEN_FIELDS = ("access_token", "access_token_expires_at", "refresh_token", "refresh_token_issued_at")
ENDPOINT_FIELDS = ("token_url", "authorize_url", "redirect_uri", "scopes", "refresh_token_lifetime_days")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class OAuthAccount(CachedJsonSchema, CredentialsBlock):
    """An OAuth 2.0 client registration plus the tokens it holds (abstract: use a concrete account block)."""

    _block_type_name: ClassVar[str | None] = None
    system_name: ClassVar[str] = "account"  # "Visma.net" / "Nmbrs", for messages
    connect_command: ClassVar[str] = "nmbrs-visma connect"

    token_url: str = Field(title="Token URL", description="The OAuth 2.0 token endpoint.")
    authorize_url: str = Field(
        title="Authorize URL", description="The OAuth 2.0 authorize endpoint (interactive login)."
    )
    client_id: str = Field(title="Client ID", description="The OAuth 2.0 client id of the registered application.")
    client_secret: SecretStr = Field(
        title="Client secret", description="The OAuth 2.0 client secret of the registered application."
    )
    scopes: list[str] = Field(
        default_factory=list, title="Scopes", description="The scopes requested from the token endpoint."
    )
    redirect_uri: str = Field(
        default=DEFAULT_REDIRECT_URI,
        title="Redirect URI",
        description="The loopback redirect URI registered for the application (used by `nmbrs-visma connect`).",
    )
    access_token: SecretStr | None = Field(
        default=None,
        title="Access token",
        description=f"The current access token. {FILLED_IN}",
    )
    access_token_expires_at: dt.datetime | None = Field(
        default=None,
        title="Access token valid until",
        description=f"When the current access token expires (UTC). {FILLED_IN}",
    )
    refresh_token: SecretStr | None = Field(
        default=None,
        title="Refresh token",
        description="The current refresh token (each one works once: every renewal replaces it). " + FILLED_IN,
    )
    refresh_token_issued_at: dt.datetime | None = Field(
        default=None,
        title="Refresh token issued at",
        description="When the current refresh token was issued (UTC); its lifetime counts from here. " + FILLED_IN,
    )
    refresh_token_lifetime_days: int = Field(
        default=30,
        ge=1,
        title="Refresh token lifetime (days)",
        description="Days a refresh token stays valid unused; after that the account must be connected again.",
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        title="Time-out (seconds)",
        description="Seconds the client waits to connect, to send a request or for the next bytes of an answer.",
    )

    @property
    def refresh_token_expires_at(self) -> dt.datetime | None:
        """When the stored refresh token lapses if it is not used (each rotation restarts the clock); None for
        an account without one (a service account, or one never connected) or with no known issue time."""
        if not self.uses_refresh_token or self.refresh_token is None or self.refresh_token_issued_at is None:
            return None
        return self.refresh_token_issued_at + dt.timedelta(days=self.refresh_token_lifetime_days)

    @property
    def refresh_token_days_left(self) -> int | None:
        """Whole days until the refresh token lapses (negative once it has), or None (see the expiry)."""
        expires = self.refresh_token_expires_at
        return None if expires is None else (expires - utc_now()).days

    # -- token state ----------------------------------------------------------------------------------------

    @property
    def uses_refresh_token(self) -> bool:
        """True when this account lives on a refresh token (authorization code); False for a service account."""
        return True

    def token_dict(self) -> dict[str, Any] | None:
        """The stored token pair in authlib's shape, or None when nothing is stored yet."""
        if self.access_token is None and self.refresh_token is None:
            return None
        token: dict[str, Any] = {"token_type": "Bearer"}
        if self.access_token is not None:
            token["access_token"] = self.access_token.get_secret_value()
        if self.access_token_expires_at is not None:
            token["expires_at"] = int(self.access_token_expires_at.timestamp())
        if self.refresh_token is not None:
            token["refresh_token"] = self.refresh_token.get_secret_value()
        return token

    def access_token_valid(self, *, margin: dt.timedelta = dt.timedelta(minutes=5)) -> bool:
        """True when an access token is stored and still valid for at least `margin`."""
        if self.access_token is None or self.access_token_expires_at is None:
            return False
        return self.access_token_expires_at - margin > utc_now()

    def apply_token(self, token: Mapping[str, Any]) -> None:
        """Take a token endpoint answer into the fields (no save). A new refresh token restarts its clock."""
        now = utc_now()
        access = token.get("access_token")
        self.access_token = SecretStr(str(access)) if access else None
        if token.get("expires_at") is not None:
            self.access_token_expires_at = dt.datetime.fromtimestamp(float(token["expires_at"]), dt.UTC)  # float ok
        elif token.get("expires_in") is not None:
            self.access_token_expires_at = now + dt.timedelta(seconds=float(token["expires_in"]))  # float ok
        else:
            self.access_token_expires_at = None
        refresh = token.get("refresh_token")
        if refresh and (self.refresh_token is None or self.refresh_token.get_secret_value() != refresh):
            self.refresh_token = SecretStr(str(refresh))
            self.refresh_token_issued_at = now

    def store_token(self, token: Mapping[str, Any]) -> None:
        """The auth classes' `on_token` callback: take the new pair and save the block at once.

        Only a refresh-token account is saved: its pair rotates and must never be lost. A service account's
        token is fetched per run and kept in memory: nothing rotates, the token stays out of the database, and a
        run does not pay a block save per account.
        """
        with _STORE_LOCK:
            self.apply_token(token)
            if self.uses_refresh_token and self._block_document_name is not None:
                self.save(overwrite=True, _sync=True)

    def get_auth(self, *, guarded: bool = True, on_token: TokenCallback | None = None) -> OAuth2Auth:
        """The auth for this account; every new token pair goes to `on_token` (default: saved to this block).

        `guarded` (a saved block whose token rotates): a renewal takes the account's token lock and re-reads the
        block first. The token refresh task and `connect`, already holding the lock or alone, ask for an
        unguarded one.
        """
        return self._auth(on_token=on_token or self.store_token, guard=self._guard(guarded))

    def _guard(self, guarded: bool = True) -> TokenGuard | None:
        name = self._block_document_name
        return SavedAccountGuard(type(self), name) if guarded and self.uses_refresh_token and name else None

    def _auth(self, *, on_token: TokenCallback, guard: TokenGuard | None) -> OAuth2Auth:
        """The system's auth class built from this block's fields (`_auth_settings` and its own)."""
        raise NotImplementedError

    def _auth_settings(self, *, on_token: TokenCallback, guard: TokenGuard | None) -> dict[str, Any]:
        """What every auth takes from the block: the client, its endpoints, the saved token and where new ones go."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "token_url": self.token_url,
            "authorize_url": self.authorize_url,
            "token": self.token_dict(),
            "on_token": on_token,
            "guard": guard,
            "timeout": self.timeout_seconds,
        }

    def renew_token(self) -> None:
        """Get a new token pair now (saved at once). The caller holds the account's token lock."""
        auth = self.get_auth(guarded=False)
        try:
            auth.renew()
        finally:
            auth.close()

    def forget_tokens(self) -> None:
        """Drop both tokens (a revoked grant); the block keeps its client settings."""
        self.access_token = None
        self.access_token_expires_at = None
        self.refresh_token = None
        self.refresh_token_issued_at = None

    @property
    def account_name(self) -> str:
        return self._block_document_name or "(unsaved)"


@dataclass(frozen=True)
class SavedAccountGuard:
    """The `TokenGuard` of a saved account block: its token lock, and its token as saved now."""

    account_type: type[OAuthAccount]
    name: str

    def hold(self) -> contextlib.AbstractContextManager[object]:
        from nmbrs_visma.blocks.locks import token_lock

        return token_lock(self.account_type, self.name)

    def saved_token(self) -> Mapping[str, Any] | None:
        return self.account_type.load(self.name, _sync=True).token_dict()
