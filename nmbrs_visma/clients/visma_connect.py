"""Visma Connect tokens for the Visma.net ERP API: the shared OAuth 2.0 auth (clients/oauth.py) for two flows.

- service: `client_credentials` + `tenant_id`, scopes `vismanet_erp_service_api:create|read|update`; renewed by a
  new client-credentials token, so it needs no refresh token and nothing rotates;
- interactive: authorization code + PKCE S256 + `state`, `prompt=login`, `offline_access`, scopes
  `vismanet_erp_interactive_api:create|read|update`, renewed with its (rotating) refresh token.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr

from nmbrs_visma.clients.oauth import OAuth2Auth

DEFAULT_TOKEN_URL = "https://connect.visma.com/connect/token"
DEFAULT_AUTHORIZE_URL = "https://connect.visma.com/connect/authorize"
SERVICE_SCOPES = ("vismanet_erp_service_api:create", "vismanet_erp_service_api:read", "vismanet_erp_service_api:update")
INTERACTIVE_SCOPES = (
    "vismanet_erp_interactive_api:create",
    "vismanet_erp_interactive_api:read",
    "vismanet_erp_interactive_api:update",
    "offline_access",
)

Flow = Literal["service", "interactive"]


class VismaConnectAuth(OAuth2Auth):
    """The Visma Connect token of one account (one tenant); `flow` is "service" or "interactive"."""

    identity = "Visma Connect"
    system = "Visma.net"
    default_token_url = DEFAULT_TOKEN_URL
    default_authorize_url = DEFAULT_AUTHORIZE_URL

    def __init__(self, *, flow: Flow, tenant_id: str | None = None, **settings: Any) -> None:
        """`settings`: those of `OAuth2Auth`; the scopes default to the flow's."""
        if flow == "service" and not tenant_id:
            raise ValueError("the service flow needs a tenant_id")
        if flow == "interactive" and not settings.get("redirect_uri"):
            raise ValueError("the interactive flow needs a redirect_uri")
        self.flow: Flow = flow
        self.tenant_id = tenant_id
        settings["scopes"] = settings.get("scopes") or (SERVICE_SCOPES if flow == "service" else INTERACTIVE_SCOPES)
        super().__init__(**settings)

    @classmethod
    def service(cls, *, client_id: str, client_secret: SecretStr, tenant_id: str, **kwargs: Any) -> VismaConnectAuth:
        return cls(client_id=client_id, client_secret=client_secret, flow="service", tenant_id=tenant_id, **kwargs)

    @classmethod
    def interactive(
        cls, *, client_id: str, client_secret: SecretStr, redirect_uri: str, **kwargs: Any
    ) -> VismaConnectAuth:
        return cls(
            client_id=client_id, client_secret=client_secret, flow="interactive", redirect_uri=redirect_uri, **kwargs
        )

    def __repr__(self) -> str:
        return f"VismaConnectAuth(client_id={self.client_id!r}, flow={self.flow!r}, tenant_id={self.tenant_id!r})"

    def _authorization_params(self) -> dict[str, str]:
        """A known tenant is asked for at login (`acr_values=tenant:<id>`), so the user cannot pick another."""
        return {"acr_values": f"tenant:{self.tenant_id}"} if self.tenant_id else {}

    def _grant_without_refresh_token(self) -> None:
        if self.flow != "service":
            super()._grant_without_refresh_token()
            return
        self._token_request(
            "fetching a client_credentials token",
            lambda: self._oauth.fetch_token(self.token_url, grant_type="client_credentials", tenant_id=self.tenant_id),
        )

    def _can_renew(self) -> bool:
        return self.flow == "service" or super()._can_renew()
