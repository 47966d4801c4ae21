"""The Nmbrs account block: an Nmbrs REST API client registration, subscription key and tokens; builds the client."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr

from nmbrs_visma.blocks.oauth import ENDPOINT_FIELDS, TOKEN_FIELDS, OAuthAccount
from nmbrs_visma.clients.nmbrs import DEFAULT_AUTHORIZE_URL, DEFAULT_BASE_URL, DEFAULT_SCOPES, DEFAULT_TOKEN_URL

if TYPE_CHECKING:
    from nmbrs_visma.clients.nmbrs import NmbrsAuth, NmbrsClient
    from nmbrs_visma.clients.oauth import TokenCallback, TokenGuard

DEFAULT_TIMEOUT_SECONDS = 30.0  # an account's HTTP time-out unless its block says otherwise


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

    _form_order: ClassVar[tuple[str, ...]] = (
        "base_url",
        "client_id",
        "client_secret",
        "subscription_key",
        "timeout_seconds",
        *ENDPOINT_FIELDS,
        *TOKEN_FIELDS,
    )

    base_url: str = Field(default=DEFAULT_BASE_URL, title="Base URL", description="The Nmbrs REST API base URL.")
    token_url: str = Field(
        default=DEFAULT_TOKEN_URL,
        title="Token URL",
        description="The Nmbrs identity server token endpoint.",
    )
    authorize_url: str = Field(
        default=DEFAULT_AUTHORIZE_URL,
        title="Authorize URL",
        description="The Nmbrs identity server authorize endpoint.",
    )
    client_id: str = Field(
        title="Client ID", description="The OAuth 2.0 client id of the application registered with Nmbrs."
    )
    client_secret: SecretStr = Field(
        title="Client secret", description="The OAuth 2.0 client secret of the application registered with Nmbrs."
    )
    subscription_key: SecretStr = Field(
        title="Subscription key", description="The Nmbrs API subscription key (sent as X-Subscription-Key)."
    )
    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT_SECONDS,
        gt=0,
        title="Time-out (seconds)",
        description="Seconds the Nmbrs client waits to connect, to send a request or for the next bytes of an answer "
        "before it gives up on that request; raise it for a slow connection.",
    )
    scopes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES),
        title="Scopes",
        description="The scopes to request at login; offline_access gives the refresh token.",
    )
    refresh_token_lifetime_days: int = Field(
        default=30,
        ge=1,
        title="Refresh token lifetime (days)",
        description="Days an Nmbrs refresh token stays valid unused (30); after that the account must be connected "
        "again. The keep-alive deployment renews it before then.",
    )

    def token_dict(self) -> dict[str, Any] | None:
        token = super().token_dict()
        expires = self.refresh_token_expires_at
        if token is not None and expires is not None:
            token["refresh_expires_at"] = expires.timestamp()  # the auth refuses a lapsed refresh token early
        return token

    def _auth(self, *, on_token: TokenCallback, guard: TokenGuard | None) -> NmbrsAuth:
        from nmbrs_visma.clients.nmbrs import NmbrsAuth

        return NmbrsAuth(
            **self._auth_settings(on_token=on_token, guard=guard),
            scopes=list(self.scopes),
            refresh_token_lifetime=dt.timedelta(days=self.refresh_token_lifetime_days),
        )

    def get_client(self, *, timeout: float | None = None) -> NmbrsClient:
        """An Nmbrs REST client (close it, or use it as a context manager) that waits `timeout` seconds for an
        answer; None: this account's `timeout_seconds`."""
        from nmbrs_visma.clients.nmbrs import NmbrsClient

        return NmbrsClient(
            base_url=self.base_url,
            auth=self._auth(on_token=self.store_token, guard=self._guard()),
            subscription_key=self.subscription_key,
            timeout=self.timeout_seconds if timeout is None else timeout,
        )
