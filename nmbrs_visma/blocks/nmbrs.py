"""The Nmbrs account block: an Nmbrs REST API client registration, subscription key and tokens; builds the client."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, SecretStr

from nmbrs_visma.blocks.oauth import OAuthAccount, utc_now

if TYPE_CHECKING:
    from nmbrs_visma.clients.nmbrs import NmbrsAuth, NmbrsClient

NMBRS_SCOPES = ("offline_access",)


class NmbrsAccount(OAuthAccount):
    """A Visma Nmbrs environment (one bureau login) and the OAuth 2.0 credentials to read its payroll journals."""

    _block_type_name = "Nmbrs Account"
    _block_type_slug = "nmbrs-account"
    _documentation_url = "https://developer.nmbrs.com/docs/getting-started"
    _description = (
        "A Visma Nmbrs environment and the credentials to read payroll runs and journals from its REST API: "
        "an OAuth 2.0 client (authorization code + PKCE, rotating refresh tokens saved back here at once) "
        "and the API subscription key."
    )
    _code_example = """
    ```python
    from nmbrs_visma.blocks import NmbrsAccount

    nmbrs_account = NmbrsAccount.load("BLOCK_NAME")
    with nmbrs_account.get_client() as client:
        debtors = client.debtors()
    ```
    """
    system_name: ClassVar[str] = "Nmbrs"
    connect_command: ClassVar[str] = "nmbrs-visma connect nmbrs"

    base_url: str = Field(
        default="https://api.nmbrsapp.com", title="Base URL", description="The Nmbrs REST API base URL."
    )
    token_url: str = Field(
        default="https://identityservice.nmbrs.com/connect/token",
        title="Token URL",
        description="The Nmbrs identity server token endpoint.",
    )
    authorize_url: str = Field(
        default="https://identityservice.nmbrs.com/connect/authorize",
        title="Authorize URL",
        description="The Nmbrs identity server authorize endpoint.",
    )
    subscription_key: SecretStr = Field(description="The Nmbrs API subscription key (sent as X-Subscription-Key).")
    scopes: list[str] = Field(
        default_factory=lambda: list(NMBRS_SCOPES),
        description="The scopes to request at login; offline_access gives the refresh token.",
    )
    refresh_token_lifetime_days: int = Field(
        default=30,
        ge=1,
        description="Days a refresh token stays valid unused; after that the account must be connected again.",
    )

    @property
    def refresh_token_expires_at(self) -> dt.datetime | None:
        """When the stored refresh token lapses if it is not used (each rotation restarts the clock)."""
        if self.refresh_token is None or self.refresh_token_issued_at is None:
            return None
        return self.refresh_token_issued_at + dt.timedelta(days=self.refresh_token_lifetime_days)

    @property
    def refresh_token_days_left(self) -> int | None:
        expires = self.refresh_token_expires_at
        return None if expires is None else (expires - utc_now()).days

    def get_auth(self) -> NmbrsAuth:
        """The Nmbrs identity auth for this account; every new token pair is saved to this block at once."""
        from nmbrs_visma.clients.nmbrs import NmbrsAuth

        return NmbrsAuth(
            token_url=self.token_url,
            authorize_url=self.authorize_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            scopes=list(self.scopes),
            redirect_uri=self.redirect_uri,
            token=self.token_dict(),
            on_token=self.store_token,
        )

    def get_client(self, *, timeout: float = 30.0) -> NmbrsClient:
        """An Nmbrs REST client (close it, or use it as a context manager)."""
        from nmbrs_visma.clients.nmbrs import NmbrsClient

        return NmbrsClient(
            base_url=self.base_url, auth=self.get_auth(), subscription_key=self.subscription_key, timeout=timeout
        )
