"""Emulated Visma Connect: `/connect/authorize` (auto-approves the demo user, no browser) and `/connect/token`
(client_credentials + tenant_id, authorization_code + PKCE S256, refresh_token with one-time rotation and a
grace period, or re-use, per client). Errors are RFC 6749 JSON (`error`, `error_description`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Annotated
from urllib.parse import unquote_plus, urlencode, urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from nmbrs_visma.sandbox.visma_net.world import (
    DEMO_USER,
    INTERACTIVE_SCOPES,
    SERVICE_SCOPES,
    Grant,
    OAuthClient,
    VismaWorld,
)

_LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def _redirect_allowed(client: OAuthClient, redirect_uri: str) -> bool:
    if redirect_uri in client.redirect_uris:
        return True
    asked = urlsplit(redirect_uri)
    for registered in map(urlsplit, client.redirect_uris):
        same_loopback = asked.hostname in _LOOPBACK and registered.hostname in _LOOPBACK
        if same_loopback and asked.scheme == registered.scheme and asked.path == registered.path:
            return True  # RFC 8252 7.3: any port on loopback
    return False


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _authenticate(world: VismaWorld, request: Request, form_id: str | None, form_secret: str | None) -> OAuthClient:
    client_id, secret = form_id, form_secret
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            client_id = secret = None
        client_id = unquote_plus(client_id) if client_id else client_id
        secret = unquote_plus(secret) if secret else secret
    client = world.clients.get(client_id or "")
    if client is None or secret is None or not hmac.compare_digest(client.secret, secret):
        raise _ClientAuthFailed
    return client


class _ClientAuthFailed(Exception):
    pass


def _scopes(asked: str | None, allowed: tuple[str, ...], *, offline: bool) -> frozenset[str] | None:
    wanted = set((asked or "").split()) or set(allowed)
    permitted = set(allowed) | ({"offline_access", "openid", "profile", "email"} if offline else set())
    return frozenset(wanted) if wanted <= permitted else None


def create_connect_router(world: VismaWorld) -> APIRouter:
    router = APIRouter(prefix="/connect")

    @router.get("/authorize")
    def authorize(
        response_type: str = "",
        client_id: str = "",
        redirect_uri: str = "",
        scope: str = "",
        state: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
        prompt: str | None = None,
        acr_values: str | None = None,
        tenant_id: str | None = None,
    ) -> Response:
        client = world.clients.get(client_id)
        if client is None or client.kind != "interactive" or not _redirect_allowed(client, redirect_uri):
            # Never redirect to an unregistered URI.
            return PlainTextResponse("unknown client or redirect_uri not registered", status_code=400)

        def back(**params: str) -> RedirectResponse:
            if state is not None:
                params["state"] = state
            return RedirectResponse(f"{redirect_uri}?{urlencode(params)}", status_code=302)

        if response_type != "code":
            return back(error="unsupported_response_type", error_description="only the code flow is supported")
        if not code_challenge or code_challenge_method != "S256":
            return back(error="invalid_request", error_description="PKCE with code_challenge_method=S256 required")
        if prompt not in (None, "", "login", "consent", "select_account"):
            return back(error="invalid_request", error_description=f"unsupported prompt {prompt}")
        scopes = _scopes(scope, INTERACTIVE_SCOPES, offline=True)
        if scopes is None:
            return back(error="invalid_scope", error_description="scope not allowed for this client")
        chosen = tenant_id
        for value in (acr_values or "").split():
            if value.startswith("tenant:"):
                chosen = value.removeprefix("tenant:")
        chosen = chosen or sorted(client.tenants)[0]
        if chosen not in client.tenants:
            return back(error="access_denied", error_description="the user has no access to that company")
        # The demo user logs in (prompt=login: a fresh login every time, no session to log out of) and approves.
        code = world.new_token(
            Grant(
                client_id=client.client_id,
                tenant_id=chosen,
                scopes=scopes,
                expires_at=world.clock() + world.code_lifetime,
                kind="code",
                user=DEMO_USER,
                redirect_uri=redirect_uri,
                code_challenge=code_challenge,
            )
        )
        return back(code=code)

    @router.post("/token")
    def token(
        request: Request,
        grant_type: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
        scope: Annotated[str | None, Form()] = None,
        tenant_id: Annotated[str | None, Form()] = None,
        code: Annotated[str | None, Form()] = None,
        redirect_uri: Annotated[str | None, Form()] = None,
        code_verifier: Annotated[str | None, Form()] = None,
        refresh_token: Annotated[str | None, Form()] = None,
    ) -> Response:
        now = world.clock()
        with world.lock:
            world.token_requests.append((now, grant_type))
        try:
            client = _authenticate(world, request, client_id, client_secret)
        except _ClientAuthFailed:
            return _oauth_error("invalid_client", "client authentication failed", 401)

        if grant_type == "client_credentials":
            if client.kind != "service":
                return _oauth_error("unauthorized_client", "client_credentials is for service clients")
            if not tenant_id:
                return _oauth_error("invalid_request", "tenant_id is required")
            if tenant_id not in client.tenants or tenant_id not in world.tenants:
                return _oauth_error("invalid_grant", "the client has no access to that tenant")
            scopes = _scopes(scope, SERVICE_SCOPES, offline=False)
            if scopes is None:
                return _oauth_error("invalid_scope", "scope not allowed for this client")
            return _issue(world, client, tenant_id, scopes, user=None, with_refresh=False)

        if grant_type == "authorization_code":
            with world.lock:
                grant = world.grants.get(code or "")
                if grant is None or grant.kind != "code" or grant.client_id != client.client_id:
                    return _oauth_error("invalid_grant", "unknown authorization code")
                if grant.used_at is not None or grant.expires_at <= now:
                    return _oauth_error("invalid_grant", "authorization code expired or already used")
                grant.used_at = now
            if redirect_uri != grant.redirect_uri:
                return _oauth_error("invalid_grant", "redirect_uri does not match the authorization request")
            if not code_verifier or not hmac.compare_digest(_s256(code_verifier), grant.code_challenge or ""):
                return _oauth_error("invalid_grant", "PKCE verification failed")
            offline = "offline_access" in grant.scopes
            return _issue(world, client, grant.tenant_id, grant.scopes, user=grant.user, with_refresh=offline)

        if grant_type == "refresh_token":
            with world.lock:
                grant = world.grants.get(refresh_token or "")
                if grant is None or grant.kind != "refresh" or grant.client_id != client.client_id:
                    return _oauth_error("invalid_grant", "unknown refresh token")
                if grant.expires_at <= now:
                    return _oauth_error("invalid_grant", "refresh token expired")
                if client.rotate_refresh_tokens:
                    if grant.used_at is not None and now - grant.used_at > world.refresh_grace_period:
                        return _oauth_error("invalid_grant", "refresh token already used")
                    grant.used_at = grant.used_at if grant.used_at is not None else now
            if client.rotate_refresh_tokens:
                return _issue(world, client, grant.tenant_id, grant.scopes, user=grant.user, with_refresh=True)
            return _issue(world, client, grant.tenant_id, grant.scopes, user=grant.user, reuse_refresh=refresh_token)

        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    return router


def _issue(
    world: VismaWorld,
    client: OAuthClient,
    tenant_id: str,
    scopes: frozenset[str],
    *,
    user: str | None,
    with_refresh: bool = False,
    reuse_refresh: str | None = None,
) -> JSONResponse:
    now = world.clock()
    access = world.new_token(
        Grant(client.client_id, tenant_id, scopes, expires_at=now + world.access_token_lifetime, user=user)
    )
    body: dict[str, object] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(world.access_token_lifetime) if world.access_token_lifetime >= 1 else 1,
        "scope": " ".join(sorted(scopes)),
    }
    if with_refresh:
        body["refresh_token"] = world.new_token(
            Grant(
                client.client_id,
                tenant_id,
                scopes,
                expires_at=now + world.refresh_token_lifetime,
                kind="refresh",
                user=user,
            )
        )
    elif reuse_refresh:
        body["refresh_token"] = reuse_refresh
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
