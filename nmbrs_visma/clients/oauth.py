"""OAuth 2.0 for both APIs: one `httpx2.Auth`, built on authlib, that holds, renews and hands on one account's token.

Why one design: Nmbrs and Visma Connect hand out tokens alike (authorization code + PKCE S256 with rotating
refresh tokens; Visma.net also client credentials), and a rotated refresh token works exactly once, so both need
the same care: one renewal at a time, every new pair handed on the moment it arrives, a 401 renewed once and the
request sent again (a 401 means the API did not act on it, so this is safe even for a create). httpx's own
pattern for auth that needs locks and I/O is an `httpx2.Auth` flow; authlib does the token requests.

One vocabulary, the same on both systems' subclasses (`NmbrsAuth`, `VismaConnectAuth`)::

    request = auth.authorization_request()          # send the user to request.url; keep `request` until the callback
    auth.complete_authorization(callback_url, request)   # the code for the first token pair
    auth.has_token                                  # a token is held
    auth.access_token()                             # a live access token (SecretStr), renewed within the leeway
    auth.renew(stale=token)                         # a new pair now; with `stale`, only if that token is still held
    on_token(token)                                 # receives every new pair at once (save it: the old one is dead)

A saved account adds two things through its `TokenGuard` (the blocks do, see blocks/oauth.py): a lock held
around every renewal (another process may renew the same account: the Prefect global concurrency limit of the
account), and the token saved meanwhile by another run, adopted instead of spending a refresh token that run
already spent. Subclasses say only what differs: the renewal without a refresh token, which 401 is the token's
fault, and what the authorize URL carries. Nothing here logs or repr()s a token or the client secret.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from pydantic import SecretStr

from nmbrs_visma.clients.errors import AuthError, TransportError
from nmbrs_visma.clients.http import shared_transport, tls_context
from nmbrs_visma.clients.secrets import Scrubber, basic_credentials

logger = logging.getLogger(__name__)

TokenCallback = Callable[[dict[str, Any]], None]
Token = dict[str, Any]


class TokenGuard(Protocol):
    """What a saved account adds to its auth: a cross-process lock around renewals, and the token saved meanwhile."""

    def hold(self) -> contextlib.AbstractContextManager[object]:
        """Held around every renewal (after the auth's own thread lock)."""
        ...

    def saved_token(self) -> Mapping[str, Any] | None:
        """The token saved for the account now (another run may have renewed it), or None."""
        ...


class NoGuard:
    """An auth on its own: nothing to lock across processes, nothing saved elsewhere."""

    def hold(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def saved_token(self) -> Mapping[str, Any] | None:
        return None


@dataclass(frozen=True)
class AuthorizationRequest:
    """One authorise attempt: send the user to `url`; keep `state`, the PKCE verifier and the redirect URI until
    the callback comes back."""

    url: str
    state: str
    code_verifier: SecretStr = field(repr=False)
    redirect_uri: str = ""


class OAuth2Auth(httpx2.Auth):
    """Bearer tokens for one account (see the module docstring). Thread-safe: one renewal at a time per object.

    `token` is a previously saved token dict (or None before the first authorisation). `refresh_token_lifetime`:
    how long a refresh token lives unused when the server does not say (`refresh_token_expires_in`); a lapsed one
    is refused here, before a token request that could only fail. `attempts`: tries of a token request on a
    transport error or 5xx. The URLs, scopes and lifetime default to the subclass's `default_*`.
    """

    identity: ClassVar[str] = "identity server"  # how messages name the token issuer
    system: ClassVar[str] = "the"  # how messages name the account's system
    default_token_url: ClassVar[str] = ""
    default_authorize_url: ClassVar[str] = ""
    default_scopes: ClassVar[tuple[str, ...]] = ()
    default_refresh_token_lifetime: ClassVar[dt.timedelta | None] = None
    requires_request_body = True  # a 401 resends the request: its body must be at hand
    requires_response_body = False  # only a 401's body is read (see sync_auth_flow): documents stream

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: SecretStr,
        redirect_uri: str | None = None,
        token: Mapping[str, Any] | None = None,
        on_token: TokenCallback | None = None,
        guard: TokenGuard | None = None,
        token_url: str | None = None,
        authorize_url: str | None = None,
        scopes: Sequence[str] | None = None,
        refresh_token_lifetime: dt.timedelta | None = None,
        leeway: float = 60.0,
        timeout: float = 30.0,
        attempts: int = 3,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.client_id = client_id
        self.token_url = token_url or self.default_token_url
        self.authorize_url = authorize_url or self.default_authorize_url
        self.redirect_uri = redirect_uri
        self.scopes = tuple(scopes or self.default_scopes)
        self.refresh_token_lifetime = refresh_token_lifetime or self.default_refresh_token_lifetime
        self.leeway = leeway
        self.attempts = max(1, attempts)
        self.guard: TokenGuard = guard or NoGuard()
        self._on_token = on_token
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()
        self._token: Token | None = dict(token) if token else None
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
            transport=transport if transport is not None else shared_transport(),
            verify=tls_context(),
        )
        for hook in ("access_token_response", "refresh_token_response"):
            self._oauth.register_compliance_hook(hook, self._note_status)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id!r}, has_token={self.has_token})"

    # -- authorisation (once per account) --

    def authorization_request(self, *, state: str | None = None) -> AuthorizationRequest:
        """The URL to send the user to: PKCE S256, a fresh `state`, `prompt=login` (a fresh login, no "log out
        first"), plus what the system asks for (`_authorization_params`)."""
        verifier = generate_token(64)
        url, state = self._oauth.create_authorization_url(
            self.authorize_url, state=state, code_verifier=verifier, prompt="login", **self._authorization_params()
        )
        return AuthorizationRequest(url, state, SecretStr(verifier), self.redirect_uri or "")

    def complete_authorization(self, callback_url: str, request: AuthorizationRequest) -> None:
        """Exchange the callback's code (state checked, PKCE verifier sent) for the first pair; `on_token` gets it."""
        params = httpx2.URL(callback_url).params
        if params.get("state") != request.state:
            raise self._error("state_mismatch", "the authorisation callback's state does not match the request")
        if "error" in params:
            secrets = (request.code_verifier.get_secret_value(), params.get("code"))
            code = self.scrubber(params["error"], *secrets)
            said = self.scrubber(params.get("error_description", ""), *secrets)
            raise self._error(code, f"the {self.system} authorisation was refused: {said}")
        if "code" not in params:
            raise self._error("no_code", "the authorisation callback carries no code")
        with self._lock:
            self._token_request(
                "exchanging the authorisation code",
                lambda: self._oauth.fetch_token(
                    self.token_url,
                    authorization_response=callback_url,
                    state=request.state,
                    code_verifier=request.code_verifier.get_secret_value(),
                    redirect_uri=request.redirect_uri or self.redirect_uri,
                ),
            )

    # -- tokens --

    @property
    def has_token(self) -> bool:
        token = self._token or {}
        return bool(token.get("access_token") or token.get("refresh_token"))

    @property
    def refresh_token_expires_at(self) -> dt.datetime | None:
        """When the held refresh token lapses unused, if known."""
        token = self._token or {}
        if not token.get("refresh_token") or token.get("refresh_expires_at") is None:
            return None
        return dt.datetime.fromtimestamp(float(token["refresh_expires_at"]), tz=dt.UTC)  # float ok: seconds

    @property
    def refresh_token_days_left(self) -> float | None:
        expires_at = self.refresh_token_expires_at
        return None if expires_at is None else (expires_at.timestamp() - self._clock()) / 86_400

    def access_token(self) -> SecretStr:
        """A live access token: renewed first when none is held or it expires within the leeway."""
        with self._lock:
            if self._token is None or not self._token.get("access_token") or self._expiring(self._token):
                self.renew()
            assert self._token is not None
            return SecretStr(str(self._token["access_token"]))

    def renew(self, *, stale: SecretStr | str | None = None) -> None:
        """Get a new token now, under the guard's lock: adopt the pair another run saved meanwhile (and refresh
        that one if it expires too), else refresh ours (or the system's grant without a refresh token). With
        `stale`, do nothing when the held access token is no longer that one (another thread renewed it)."""
        stale_value = stale.get_secret_value() if isinstance(stale, SecretStr) else stale
        with self._lock, self.guard.hold():
            held = (self._token or {}).get("access_token")
            if stale_value is not None and held is not None and held != stale_value:
                return
            saved = self.guard.saved_token()
            if saved and saved.get("access_token") not in (None, held):
                self._token = dict(saved)  # a newer pair saved by another run: ours (and its refresh token) is spent
                if not self._expiring(self._token):
                    return
            refresh_token = (self._token or {}).get("refresh_token")
            if not refresh_token:
                self._grant_without_refresh_token()
                return
            self._refuse_lapsed_refresh_token()
            self._token_request(
                "refreshing the access token",
                lambda: self._oauth.refresh_token(self.token_url, refresh_token=refresh_token),
            )

    # -- what a system says differently --

    def _authorization_params(self) -> dict[str, str]:
        """Extra parameters of the authorize URL."""
        return {}

    def _grant_without_refresh_token(self) -> None:
        """A renewal when no refresh token is held: by default the account must be connected first."""
        raise self._error(
            "not_authorised",
            f"the {self.system} account holds no refresh token: connect it (nmbrs-visma connect) first",
        )

    def _token_refused(self, response: httpx2.Response) -> bool:
        """Whether a 401 is the token's fault (so a renewal can help)."""
        return True

    def _can_renew(self) -> bool:
        return bool((self._token or {}).get("refresh_token"))

    # -- httpx2.Auth --

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Bearer header; on a 401 about the token renew once (unless another thread did) and send again."""
        token = self.access_token()
        request.headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        response = yield request
        if response.status_code == 401 and self._can_renew() and self._token_refused(response):
            self.renew(stale=token)
            request.headers["Authorization"] = f"Bearer {self.access_token().get_secret_value()}"
            yield request

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """httpx2's flow, reading the body of a 401 only (`_token_refused` may need it): reading every answer,
        as `requires_response_body` does, would load a streamed document whole."""
        flow = self.auth_flow(request)
        request = next(flow)
        while True:
            response = yield request
            if response.status_code == 401:
                response.read()
            try:
                request = flow.send(response)
            except StopIteration:
                break

    def close(self) -> None:
        self._oauth.close()

    # -- internals --

    def _current_tokens(self) -> list[str | None]:
        token = self._token or {}
        return [token.get("access_token"), token.get("refresh_token")]

    def _expiring(self, token: Mapping[str, Any]) -> bool:
        """Within the leeway of its expiry (a short-lived token, as in tests, within a quarter of its life)."""
        expires_at = token.get("expires_at")
        if not expires_at:
            return False
        lifetime = float(token.get("expires_in") or self.leeway * 4)  # float ok: seconds, not money
        return self._clock() >= float(expires_at) - min(self.leeway, lifetime / 4)  # float ok: seconds

    def _refuse_lapsed_refresh_token(self) -> None:
        expires_at = self.refresh_token_expires_at
        if expires_at is not None and expires_at.timestamp() <= self._clock():
            raise self._error(
                "refresh_token_expired",
                f"the {self.system} refresh token expired on {expires_at:%Y-%m-%d %H:%M} UTC (unused too long): "
                "connect the account again",
            )

    def _error(self, code: str | None, message: str, status: int | None = None) -> AuthError:
        return AuthError(status, code, message, api=self.identity)

    def _note_status(self, response: httpx2.Response) -> httpx2.Response:
        self._last_status = response.status_code
        return response

    def _token_request(self, doing: str, fetch: Callable[[], Mapping[str, Any]]) -> None:
        """Run one token request (transport errors and 5xx tried `attempts` times), keep the token, hand it on.

        A failure is raised outside the `except`, so that not even the exception's context keeps authlib's error
        (whose text is the identity server's, secrets and all)."""
        for attempt in range(1, self.attempts + 1):
            self._last_status = None
            asked_at = self._clock()  # expiry counts from the request, not the answer: never optimistic
            failure: AuthError | TransportError | None = None
            try:
                token = dict(fetch())
                break
            except OAuthError as exc:
                code = self.scrubber(exc.error) if exc.error else None
                hint = ""
                if exc.error == "invalid_grant" and doing.startswith("refresh"):
                    hint = " (a refresh token works once: another process may have used it; connect again)"
                said = self.scrubber(exc.description or exc.error or "")
                failure = self._error(code, f"refused {doing}: {said}{hint}", self._last_status)
            except httpx2.HTTPStatusError as exc:
                status = exc.response.status_code
                if status < 500 or attempt == self.attempts:
                    failure = self._error(None, f"failed {doing}: HTTP {status}", status)
            except httpx2.TransportError as exc:
                if attempt == self.attempts:
                    failure = TransportError(
                        None, type(exc).__name__, f"no answer from {self.identity} {doing}", api=self.identity
                    )
            except ValueError as exc:  # authlib: mismatching state, a malformed answer
                failure = self._error(None, f"answer unusable while {doing}: {type(exc).__name__}")
            if failure is not None:
                raise failure
            self._sleep(min(2.0, 0.2 * 2**attempt))
        self._store(token, asked_at)

    def _store(self, token: Token, asked_at: float) -> None:
        """Keep the new pair and hand it on at once; a new refresh token restarts its lifetime."""
        token.pop("id_token", None)
        if token.get("expires_in") is not None:  # our clock, not authlib's, so tests can move time
            token["expires_at"] = asked_at + float(token["expires_in"])  # float ok: seconds, not money
        if token.get("refresh_token"):
            lifetime = token.get("refresh_token_expires_in")
            if lifetime is not None:
                token["refresh_expires_at"] = asked_at + float(lifetime)  # float ok: seconds, not money
            elif self.refresh_token_lifetime is not None:
                token["refresh_expires_at"] = asked_at + self.refresh_token_lifetime.total_seconds()
        self._token = token
        logger.info("%s token renewed for client %s", self.system, self.client_id)
        if self._on_token is not None:
            self._on_token(dict(token))
