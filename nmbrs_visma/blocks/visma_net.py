"""The Visma.net account block: a Visma Connect client registration, its tenant and tokens; builds the client."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, SecretStr

from nmbrs_visma.blocks.oauth import ENDPOINT_FIELDS, TOKEN_FIELDS, OAuthAccount
from nmbrs_visma.clients.visma_connect import DEFAULT_AUTHORIZE_URL, DEFAULT_TOKEN_URL

if TYPE_CHECKING:
    from nmbrs_visma.clients.oauth import TokenCallback, TokenGuard
    from nmbrs_visma.clients.visma_connect import VismaConnectAuth
    from nmbrs_visma.clients.visma_net import VismaNetClient

DEFAULT_BASE_URL = "https://api.finance.visma.net"
DEFAULT_TIMEOUT_SECONDS = 30.0  # an account's HTTP time-out unless its block says otherwise


class VismaNetAccount(OAuthAccount):
    """A Visma.net ERP company (tenant) and the Visma Connect credentials to reach it."""

    _block_type_name = "Visma.net Account"
    _block_type_slug = "visma-net-account"
    _documentation_url = "https://docs.developers.visma.com/apis/visma-net-erp/"
    _description = (
        "A Visma.net ERP company (tenant) and the Visma Connect OAuth 2.0 credentials to post journal "
        "transactions to it: a service client (client credentials + tenant id) or an interactive login "
        "(authorization code + PKCE, refresh tokens, saved back here at once)."
    )
    _code_example = """
    ```python
    from nmbrs_visma.blocks import VismaNetAccount

    visma_net_account = VismaNetAccount.load("BLOCK_NAME")
    with visma_net_account.get_client() as client:
        periods = client.financial_periods()
    ```
    """
    system_name: ClassVar[str] = "Visma.net"
    connect_command: ClassVar[str] = "nmbrs-visma connect visma"

    _form_order: ClassVar[tuple[str, ...]] = (
        "base_url",
        "grant_type",
        "tenant_id",
        "client_id",
        "client_secret",
        "timeout_seconds",
        *ENDPOINT_FIELDS,
        *TOKEN_FIELDS,
    )

    base_url: str = Field(default=DEFAULT_BASE_URL, title="Base URL", description="The Visma.net ERP API base URL.")
    token_url: str = Field(
        default=DEFAULT_TOKEN_URL,
        title="Token URL",
        description="The Visma Connect token endpoint.",
    )
    authorize_url: str = Field(
        default=DEFAULT_AUTHORIZE_URL,
        title="Authorize URL",
        description="The Visma Connect authorize endpoint (interactive login only).",
    )
    grant_type: Literal["client_credentials", "authorization_code"] = Field(
        default="client_credentials",
        title="Grant type",
        description=(
            "client_credentials for a Visma Connect service client (needs the tenant id); "
            "authorization_code for an interactive login with `nmbrs-visma connect visma`."
        ),
    )
    tenant_id: str = Field(
        default="",
        title="Tenant ID",
        description="The Visma.net company (tenant) id; for an interactive login `connect` fills it in.",
    )
    client_id: str = Field(
        title="Client ID", description="The client id of the application registered in the Visma Developer Portal."
    )
    client_secret: SecretStr = Field(
        title="Client secret",
        description="The client secret of the application registered in the Visma Developer Portal.",
    )
    timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT_SECONDS,
        gt=0,
        title="Time-out (seconds)",
        description="Seconds the Visma.net client waits to connect, to send a request or for the next bytes of an "
        "answer before it gives up; a create whose answer comes too late is looked up in Visma.net, never sent again "
        "blindly.",
    )
    scopes: list[str] = Field(
        default_factory=list,
        title="Scopes",
        description="The scopes to request; empty means the standard service or interactive (+ offline_access) scopes.",
    )
    refresh_token_lifetime_days: int = Field(
        default=30,
        ge=1,
        title="Refresh token lifetime (days)",
        description="Interactive logins: days a refresh token stays valid unused, as Visma Connect grants it; after "
        "that the account must be connected again. The keep-alive deployment renews it before then.",
    )

    @property
    def uses_refresh_token(self) -> bool:
        return self.grant_type == "authorization_code"

    def _auth(self, *, on_token: TokenCallback, guard: TokenGuard | None) -> VismaConnectAuth:
        from nmbrs_visma.clients.visma_connect import VismaConnectAuth

        return VismaConnectAuth(
            **self._auth_settings(on_token=on_token, guard=guard),
            flow="interactive" if self.uses_refresh_token else "service",
            tenant_id=self.tenant_id or None,
            scopes=self.scopes or None,
        )

    def get_client(self, *, timeout: float | None = None) -> VismaNetClient:
        """A Visma.net ERP client for this tenant (close it, or use it as a context manager) that waits `timeout`
        seconds for an answer; None: this account's `timeout_seconds`."""
        from nmbrs_visma.clients.visma_net import VismaNetClient

        return VismaNetClient(
            base_url=self.base_url,
            auth=self._auth(on_token=self.store_token, guard=self._guard()),
            timeout=self.timeout_seconds if timeout is None else timeout,
        )
