"""The emulator's identity server: authorization code + PKCE (S256) and rotating one-time refresh tokens.

The authorize endpoint approves the demo user at once (no browser, no login page) for a registered
redirect URI, so a test or the sandbox can run the whole connect flow with plain HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Annotated
from urllib.parse import unquote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from nmbrs_visma.sandbox.nmbrs.world import SCOPES, AuthorizationCode, Grant, NmbrsWorld


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _client_credentials(request: Request, client_id: str | None, client_secret: str | None) -> tuple[str, str]:
    """client_secret_basic (Authorization header) or client_secret_post (form fields)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:]).decode("utf-8")
        except ValueError:
            return "", ""
        user, _, password = decoded.partition(":")
        return unquote(user), unquote(password)
    return client_id or "", client_secret or ""


def identity_router(world: NmbrsWorld) -> APIRouter:
    router = APIRouter(prefix="/connect", tags=["identity"])

    @router.get("/authorize")
    def authorize(
        client_id: Annotated[str, Query()] = "",
        redirect_uri: Annotated[str, Query()] = "",
        response_type: Annotated[str, Query()] = "",
        scope: Annotated[str, Query()] = "",
        state: Annotated[str | None, Query()] = None,
        code_challenge: Annotated[str, Query()] = "",
        code_challenge_method: Annotated[str, Query()] = "",
    ) -> object:
        if client_id != world.client_id:
            return _oauth_error("invalid_client", "unknown client_id")
        if redirect_uri not in world.redirect_uris:
            return _oauth_error("invalid_request", "redirect_uri is not registered for this client")

        def back(**params: str) -> RedirectResponse:
            if state is not None:
                params["state"] = state
            separator = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params)}", status_code=302)

        if response_type != "code":
            return back(error="unsupported_response_type", error_description="only response_type=code")
        if not code_challenge or code_challenge_method != "S256":
            return back(error="invalid_request", error_description="PKCE with code_challenge_method=S256 is required")
        requested = scope.split()
        if not requested or not set(requested) <= SCOPES:
            return back(error="invalid_scope", error_description="unknown or missing scope")
        code = secrets.token_urlsafe(32)
        with world.lock:
            world.codes[code] = AuthorizationCode(
                client_id, redirect_uri, " ".join(requested), code_challenge, world.clock() + world.code_lifetime
            )
        return back(code=code, scope=" ".join(requested))

    def issue(client_id: str, scope: str) -> JSONResponse:
        now = world.clock()
        access = secrets.token_urlsafe(32)
        body: dict[str, object] = {
            "access_token": access,
            "expires_in": world.access_token_lifetime,
            "token_type": "Bearer",
            "scope": scope,
        }
        with world.lock:
            world.access_tokens[access] = Grant(client_id, scope, now + world.access_token_lifetime)
            if "offline_access" in scope.split():
                refresh = secrets.token_urlsafe(32)
                world.refresh_tokens[refresh] = Grant(client_id, scope, now + world.refresh_token_lifetime)
                body["refresh_token"] = refresh
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @router.post("/token")
    def token(
        request: Request,
        grant_type: Annotated[str, Form()] = "",
        code: Annotated[str, Form()] = "",
        redirect_uri: Annotated[str, Form()] = "",
        code_verifier: Annotated[str, Form()] = "",
        refresh_token: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        given_id, given_secret = _client_credentials(request, client_id, client_secret)
        if given_id != world.client_id or not secrets.compare_digest(given_secret, world.client_secret):
            return _oauth_error("invalid_client", "client authentication failed", status=401)
        now = world.clock()
        if grant_type == "authorization_code":
            with world.lock:
                grant = world.codes.pop(code, None)  # one-time, whatever happens next
            if grant is None or grant.expires_at < now or grant.client_id != given_id:
                return _oauth_error("invalid_grant", "authorization code is invalid, used or expired")
            if grant.redirect_uri != redirect_uri:
                return _oauth_error("invalid_grant", "redirect_uri does not match the authorization request")
            if not code_verifier or not secrets.compare_digest(_s256(code_verifier), grant.code_challenge):
                return _oauth_error("invalid_grant", "PKCE code_verifier does not match the code_challenge")
            return issue(given_id, grant.scope)
        if grant_type == "refresh_token":
            with world.lock:
                grant = world.refresh_tokens.get(refresh_token)
                if grant is None or grant.used or grant.expires_at < now or grant.client_id != given_id:
                    return _oauth_error("invalid_grant", "refresh token is invalid, already used or expired")
                grant.used = True  # rotation: every refresh token works once
            return issue(given_id, grant.scope)
        return _oauth_error("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")

    return router
