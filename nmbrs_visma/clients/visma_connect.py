"""Visma Connect tokens for the Visma.net ERP API, through authlib (no hand-written token exchange).

Two flows:
- service: `client_credentials` + `tenant_id`, scopes `vismanet_erp_service_api:create|read|update`;
- interactive: authorization code + PKCE S256 + `state`, `prompt=login` (a fresh login, no "log out first"),
  `offline_access`, scopes `vismanet_erp_interactive_api:create|read|update`, refreshed with its refresh token.

An access token is reused until shortly before it expires. Every new token pair goes to `on_token` at once,
so the caller can persist a rotated refresh token before anything else can fail. `VismaConnectAuth` is an
`httpx2.Auth`: give it to an `httpx2.Client` and each request gets a bearer token; a 401 triggers one renewal
and one resend (a 401 means the API did not act on the request, so this is safe even for a create).
Nothing here logs or repr()s a token or the client secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from pydantic import SecretStr

from nmbrs_visma.clients.http import AuthError, Scrubber, TransportError, basic_credentials, tls_context

DEFAULT_TOKEN_URL = "https://connect.visma.com/connect/token"
DEFAULT_AUTHORIZE_URL = "https://connect.visma.com/connect/authorize"
SERVICE_SCOPES = ("vismanet_erp_service_api:create", "vismanet_erp_service_api:read", "vismanet_erp_service_api:update")
INTERACTIVE_SCOPES = (
    "vismanet_erp_interactive_api:create",
    "vismanet_erp_interactive_api:read",
    "vismanet_erp_interactive_api:update",
    "offline_access",
)
_API = "Visma Connect"

Flow = Literal["service", "interactive"]
TokenCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class AuthorizationRequest:
    """What to keep between sending the user to `url` and receiving the callback."""

    url: str
    state: str
    code_verifier: SecretStr
    redirect_uri: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(url={self.url!r})"


class VismaConnectAuth(httpx2.Auth):
    """Holds and renews the Visma Connect token of one account (one tenant). Thread-safe."""

    requires_request_body = True

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        flow: Flow,
        tenant_id: str | None = None,
        redirect_uri: str | None = None,
        token: Mapping[str, Any] | None = None,
        on_token: TokenCallback | None = None,
        token_url: str = DEFAULT_TOKEN_URL,
        authorize_url: str = DEFAULT_AUTHORIZE_URL,
        scopes: Sequence[str] | None = None,
        leeway: float = 60.0,
        timeout: float = 30.0,
        attempts: int = 3,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        if flow == "service" and not tenant_id:
            raise ValueError("the service flow needs a tenant_id")
        if flow == "interactive" and not redirect_uri:
            raise ValueError("the interactive flow needs a redirect_uri")
        self.client_id = client_id
        self.flow: Flow = flow
        self.tenant_id = tenant_id
        self.redirect_uri = redirect_uri
        self.token_url = token_url
        self.authorize_url = authorize_url
        self.scopes = tuple(scopes or (SERVICE_SCOPES if flow == "service" else INTERACTIVE_SCOPES))
        self.leeway = leeway
        self.attempts = max(1, attempts)
        self._on_token = on_token
        self._lock = threading.RLock()
        self._token: dict[str, Any] | None = dict(token) if token else None
        self._last_status: int | None = None
        self.scrubber = Scrubber(client_secret, *basic_credentials(client_id, client_secret), self._current_tokens)
        self._oauth = OAuth2Client(
            client_id=client_id,
            client_secret=client_secret.get_secret_value(),
            scope=" ".join(self.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            token_endpoint=token_url,
            timeout=timeout,
            transport=transport,
            verify=tls_context(),
        )
        for hook in ("access_token_response", "refresh_token_response"):
            self._oauth.register_compliance_hook(hook, self._note_status)

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

    # -- interactive: authorise once --

    def authorization_request(self, *, tenant_id: str | None = None) -> AuthorizationRequest:
        """The URL to send the user to: PKCE S256, a fresh `state`, `prompt=login`, `offline_access`."""
        verifier = generate_token(64)
        extra: dict[str, str] = {"prompt": "login"}
        tenant = tenant_id or self.tenant_id
        if tenant:
            extra["acr_values"] = f"tenant:{tenant}"
        url, state = self._oauth.create_authorization_url(self.authorize_url, code_verifier=verifier, **extra)
        return AuthorizationRequest(url, state, SecretStr(verifier), self.redirect_uri or "")

    def complete_authorization(self, callback_url: str, request: AuthorizationRequest) -> None:
        """Exchange the callback's code (state checked, PKCE verifier sent) for tokens; `on_token` gets them."""
        query = parse_qs(urlsplit(callback_url).query)
        if query.get("state", [None])[0] != request.state:
            raise AuthError(None, "state_mismatch", "the callback's state does not match the request", api=_API)
        if "error" in query:
            verifier = request.code_verifier.get_secret_value()

            def scrub(text: str) -> str:
                return self.scrubber(text, verifier, *query.get("code", []))

            description = scrub(query.get("error_description", [""])[0])
            raise AuthError(None, scrub(query["error"][0]), f"authorisation refused: {description}", api=_API)
        self._call(
            "authorization code exchange",
            lambda: self._oauth.fetch_token(
                self.token_url,
                authorization_response=callback_url,
                state=request.state,
                code_verifier=request.code_verifier.get_secret_value(),
                redirect_uri=request.redirect_uri,
            ),
        )

    # -- tokens --

    def _current_tokens(self) -> list[str | None]:
        token = self._token or {}
        return [token.get("access_token"), token.get("refresh_token")]

    @property
    def has_token(self) -> bool:
        return self._token is not None

    @property
    def expires_at(self) -> float | None:
        return float(self._token["expires_at"]) if self._token and self._token.get("expires_at") else None  # float ok

    def access_token(self) -> SecretStr:
        """A valid access token, renewed if it expires within the leeway."""
        with self._lock:
            if self._token is None or self._expiring(self._token):
                self.renew()
            assert self._token is not None
            return SecretStr(str(self._token["access_token"]))

    def renew(self, *, stale: str | None = None) -> None:
        """Get a new access token (refresh, or a new client_credentials token). With `stale`, do nothing if the
        current token is no longer that one (another thread renewed it already)."""
        with self._lock:
            if stale is not None and self._token is not None and self._token.get("access_token") != stale:
                return
            refresh = (self._token or {}).get("refresh_token")
            if refresh:
                self._call("token refresh", lambda: self._oauth.refresh_token(self.token_url, refresh_token=refresh))
            elif self.flow == "service":
                self._call(
                    "client_credentials token",
                    lambda: self._oauth.fetch_token(
                        self.token_url, grant_type="client_credentials", tenant_id=self.tenant_id
                    ),
                )
            else:
                raise AuthError(
                    None,
                    "not_authorised",
                    "the Visma.net account has no refresh token; authorise it (connect the account) first",
                    api=_API,
                )

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        token = self.access_token().get_secret_value()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.renew(stale=token)
            request.headers["Authorization"] = f"Bearer {self.access_token().get_secret_value()}"
            yield request

    def close(self) -> None:
        self._oauth.close()

    # -- internals --

    def _expiring(self, token: Mapping[str, Any]) -> bool:
        expires_at = token.get("expires_at")
        if not expires_at:
            return False
        lifetime = float(token.get("expires_in") or self.leeway * 4)  # float ok: seconds, not money
        margin = min(self.leeway, lifetime / 4)  # short-lived tokens (tests) are still reused
        return time.time() >= float(expires_at) - margin  # float ok: seconds, not money

    def _note_status(self, response: httpx2.Response) -> httpx2.Response:
        self._last_status = response.status_code
        return response

    def _call(self, what: str, fetch: Callable[[], Mapping[str, Any]]) -> None:
        """Run one token request (retrying transport errors and 5xx), store the token and hand it on."""
        for attempt in range(1, self.attempts + 1):
            self._last_status = None
            asked_at = time.time()  # expiry counts from the request, not the answer: never optimistic
            failure: AuthError | TransportError | None = None  # raised outside `except`: no context kept
            try:
                token = fetch()
                break
            except OAuthError as exc:
                said = self.scrubber(exc.description or exc.error or "")
                code = self.scrubber(exc.error) if exc.error else exc.error
                failure = AuthError(self._last_status, code, f"{what} refused: {said}", api=_API)
            except httpx2.HTTPStatusError as exc:
                status = exc.response.status_code
                if status < 500 or attempt == self.attempts:
                    failure = AuthError(status, None, f"{what} failed with HTTP {status}", api=_API)
            except httpx2.TransportError as exc:
                if attempt == self.attempts:
                    failure = TransportError(None, type(exc).__name__, f"{what}: no answer", api=_API)
            if failure is not None:
                raise failure
            time.sleep(min(2.0, 0.2 * 2**attempt))
        stored = {key: token[key] for key in token if key != "id_token"}
        if stored.get("expires_in") is not None:
            stored["expires_at"] = asked_at + float(stored["expires_in"])  # float ok: seconds, not money
        self._token = stored
        if self._on_token is not None:
            self._on_token(dict(stored))
